// One dataset: upload (drag-and-drop of files, folders and archives, with progress), import jobs,
// the thumbnail grid, and its annotation sets.

import { all, api, ApiError, followJob, sized, upload } from './api.js';
import { clear, field, fmtBytes, fmtTime, h, progressBar, setProgress, stateBadge, toast } from './dom.js';

const IMAGE = /\.(jpe?g|png|webp|gif|bmp|tiff?)$/i;
const PAGE = 48;

/** Files of a drop, folders walked (DataTransferItem.webkitGetAsEntry). */
async function droppedFiles(dt) {
  const entries = [...dt.items].map((i) => i.webkitGetAsEntry?.()).filter(Boolean);
  if (!entries.length) return [...dt.files].map((f) => ({ file: f, path: f.name }));
  const out = [];
  async function walk(entry) {
    if (entry.isFile) {
      const file = await new Promise((res, rej) => entry.file(res, rej));
      out.push({ file, path: entry.fullPath.replace(/^\//, '') });
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((res, rej) => reader.readEntries(res, rej));
        if (!batch.length) break;
        for (const e of batch) await walk(e);
      }
    }
  }
  for (const e of entries) await walk(e);
  return out;
}

async function pool(items, n, work) {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, async () => {
    while (next < items.length) { const i = next++; await work(items[i], i); }
  }));
}

export async function render(el, [id], ctx) {
  const dataset = await api(`/api/v1/datasets/${id}`);
  const title = h('h1', null, dataset.name);
  const count = h('span', { class: 'muted', id: 'image-count' }, `${dataset.image_count} images`);
  const ac = new AbortController();

  // --- uploads
  const fileInput = h('input', { type: 'file', multiple: true, id: 'upload-files' });
  const dirInput = h('input', { type: 'file', multiple: true, webkitdirectory: true, id: 'upload-folder', 'aria-label': 'Choose a folder' });
  const uploads = h('ul', { class: 'uploads', 'aria-label': 'Uploads' });
  // How videos and PDFs become images (the import job's options; the server checks the ranges).
  const fps = h('input', { type: 'number', id: 'video-fps', min: 0.01, max: 60, step: 'any', value: 1 });
  const dpi = h('input', { type: 'number', id: 'pdf-dpi', min: 36, max: 600, step: 1, value: 150 });
  const zone = h('div', { class: 'dropzone', id: 'dropzone' },
    h('p', null, 'Drop images, folders or archives (zip, tar, video, PDF, office documents) here, or'),
    h('div', { class: 'row', style: { justifyContent: 'center' } },
      h('label', { class: 'field' }, h('span', null, 'Files or archives'), fileInput),
      h('label', { class: 'field' }, h('span', null, 'A folder'), dirInput)),
    h('details', { class: 'import-options' }, h('summary', null, 'Video and PDF options'),
      h('div', { class: 'row', style: { justifyContent: 'center' } },
        h('label', { class: 'field' }, h('span', null, 'Video frames per second'), fps),
        h('label', { class: 'field' }, h('span', null, 'PDF resolution (dpi)'), dpi))),
    uploads);
  zone.addEventListener('dragover', (e) => { e.preventDefault(); zone.classList.add('over'); });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', async (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    start(await droppedFiles(e.dataTransfer));
  });
  fileInput.addEventListener('change', () => { start([...fileInput.files].map((f) => ({ file: f, path: f.name }))); fileInput.value = ''; });
  dirInput.addEventListener('change', () => { start([...dirInput.files].map((f) => ({ file: f, path: f.webkitRelativePath || f.name }))); dirInput.value = ''; });

  function start(files) {
    const images = files.filter((f) => IMAGE.test(f.path) || f.file.type.startsWith('image/'));
    const others = files.filter((f) => !images.includes(f));
    if (images.length) uploadImages(images).catch((e) => toast(e.message, 'error'));
    for (const f of others) importFile(f).catch((e) => toast(e.message, 'error'));
  }

  async function uploadImages(files) {
    const total = files.reduce((n, f) => n + f.file.size, 0);
    const bar = progressBar(0, files.length, 'images uploaded');
    const detail = h('div', { class: 'detail muted' }, `${fmtBytes(total)} to upload`);
    const state = stateBadge('running');
    const li = h('li', { class: 'upload', dataset: { kind: 'images' } },
      h('span', null, files.length === 1 ? files[0].path : `${files.length} images`), bar, state, detail);
    uploads.prepend(li);
    const loaded = new Array(files.length).fill(0);
    const shas = [];
    const failed = [];
    let done = 0;
    await pool(files, 4, async (f, i) => {
      try {
        const obj = await upload('/api/v1/objects', f.file, (l) => {
          loaded[i] = l;
          detail.textContent = `${fmtBytes(loaded.reduce((a, b) => a + b, 0))} of ${fmtBytes(total)}`;
        }, ac.signal);
        shas.push({ sha256: obj.sha256, name: f.path });
      } catch (e) {
        failed.push(`${f.path}: ${e.message}`);
      }
      setProgress(bar, ++done, files.length);
    });
    let added = 0;
    let already = 0;
    for (let i = 0; i < shas.length; i += 1000) {
      const r = await api(`/api/v1/datasets/${id}/images`, { json: { images: shas.slice(i, i + 1000) } });
      added += r.added.length;
      already += r.already_present;
    }
    state.replaceWith(stateBadge(failed.length ? 'failed' : 'succeeded'));
    detail.textContent = `${added} images added, ${already} already in the dataset` +
      (failed.length ? `, ${failed.length} skipped: ${failed.join('; ')}` : '');
    li.dataset.state = 'done';
    refresh();
  }

  async function importFile(f) {
    const bar = progressBar(0, f.file.size, `upload of ${f.path}`);
    bar.querySelector('.progress-text').textContent = fmtBytes(f.file.size);
    const detail = h('div', { class: 'detail', 'aria-live': 'polite' }, 'uploading…');
    let badge = stateBadge('running');
    const li = h('li', { class: 'upload', dataset: { kind: 'import' } }, h('span', null, f.path), bar, badge, detail);
    uploads.prepend(li);
    let job;
    try {
      const options = new URLSearchParams({ filename: f.path, video_fps: fps.value || '1', pdf_dpi: dpi.value || '150' });
      job = await upload(`/api/v1/datasets/${id}/imports?${options}`, f.file, (l, t) => {
        setProgress(bar, l, t);
        bar.querySelector('.progress-text').textContent = `${fmtBytes(l)} / ${fmtBytes(t)}`;
      }, ac.signal);
    } catch (e) {
      const msg = e instanceof ApiError && e.status === 404 ? 'this node cannot import archives yet' : e.message;
      badge.replaceWith(stateBadge('failed'));
      detail.textContent = msg;
      li.dataset.state = 'done';
      return;
    }
    const counts = h('span', { class: 'counts' }, 'importing…');
    detail.replaceChildren(counts);
    const cancel = h('button', { type: 'button', class: 'danger' }, 'Cancel import');
    cancel.addEventListener('click', async () => {
      cancel.disabled = true;
      try { await api(`/api/v1/jobs/${job.id}/cancel`, { method: 'POST' }); } catch (e) { toast(e.message, 'error'); cancel.disabled = false; }
    });
    li.append(cancel);
    const final = await followJob(job.id, (j) => {
      const p = j.progress || {};
      counts.textContent = `files ${p.files_seen ?? 0} · images added ${p.images_added ?? 0} · duplicates ${p.duplicates ?? 0} · skipped ${p.skipped ?? 0}`;
      if (j.state === 'running') count.textContent = `${dataset.image_count + (p.images_added || 0)}+ images`;
    }, ac.signal);
    cancel.remove();
    // A job that found nothing to add (every file skipped) did not succeed at anything.
    const p = final.progress || {};
    const nothing = final.state === 'succeeded' && !p.images_added && !p.duplicates && p.skipped > 0;
    const b2 = nothing ? h('span', { class: 'badge st-warning' }, 'nothing imported') : stateBadge(final.state);
    badge.replaceWith(b2);
    badge = b2;
    if (final.error) detail.append(h('div', { class: 'error' }, final.error));
    if (final.skipped?.length) {
      detail.append(h('details', null, h('summary', null, `${final.skipped.length} skipped`),
        h('ul', null, final.skipped.map((s) => h('li', null, `${s.name}: ${s.reason}`)))));
    }
    li.dataset.state = 'done';
    loadJobs();
    refresh();
  }

  // --- jobs
  const jobsBox = h('div', { id: 'jobs' });
  async function loadJobs() {
    try {
      // The dataset's jobs include exports of its annotation sets: only imports belong here.
      const page = await api(`/api/v1/jobs?dataset=${id}&limit=50`);
      const imports = page.items.filter((j) => j.kind === 'import').slice(0, 10);
      clear(jobsBox);
      if (!imports.length) return;
      jobsBox.append(h('h2', null, 'Recent imports'), h('table', null,
        h('thead', null, h('tr', null, ['Job', 'Kind', 'State', 'Images added', 'Duplicates', 'Skipped', 'Started'].map((t) => h('th', null, t)))),
        h('tbody', null, imports.map((j) => h('tr', { dataset: { job: String(j.id), kind: j.kind } },
          h('td', null, j.id), h('td', null, j.kind), h('td', null, stateBadge(j.state)),
          h('td', null, j.progress?.images_added ?? ''), h('td', null, j.progress?.duplicates ?? ''),
          h('td', null, j.progress?.skipped ?? ''), h('td', null, fmtTime(j.created_ms)))))));
    } catch { /* jobs are optional on older nodes */ }
  }

  // --- thumbnails
  const grid = h('div', { class: 'grid', id: 'thumbs', 'aria-label': 'Images' });
  const prev = h('button', { type: 'button' }, '← Previous');
  const next = h('button', { type: 'button' }, 'Next →');
  const pageInfo = h('span', { class: 'muted' });
  const cursors = [null];
  let pageNo = 0;
  let nextCursor = null;
  // Filters (annotated or not, by label) are answered by the server from an annotation set's
  // saved shapes; the matching images are then paged here.
  const filterSet = h('select', { id: 'filter-set' }, h('option', { value: '' }, 'no filter'));
  const filterState = h('select', { id: 'filter-state' },
    [['', 'all images'], ['annotated', 'annotated'], ['unannotated', 'not annotated']].map(([v, t]) => h('option', { value: v }, t)));
  const filterLabel = h('select', { id: 'filter-label' }, h('option', { value: '' }, 'any label'));
  const filterNote = h('span', { class: 'muted', 'aria-live': 'polite' });
  const filters = h('div', { class: 'row', role: 'group', 'aria-label': 'Filters' },
    field('Annotation set', filterSet), field('Status', filterState), field('Label', filterLabel), filterNote);
  let filtered = null; // the filtered image list, when a filter is on
  async function applyFilters() {
    const setId = filterSet.value;
    if (!setId || (!filterState.value && !filterLabel.value)) {
      filtered = null;
      filterNote.textContent = '';
    } else {
      filterNote.textContent = 'filtering…';
      let q = `annotation_set=${setId}`;
      if (filterState.value) q += `&annotated=${filterState.value === 'annotated'}`;
      if (filterLabel.value) q += `&label=${encodeURIComponent(filterLabel.value)}`;
      filtered = await all(`/api/v1/datasets/${id}/images?${q}`);
      const total = (await api(`/api/v1/datasets/${id}`)).image_count;
      filterNote.textContent = `${filtered.length} of ${total} images match`;
    }
    pageNo = 0;
    cursors.length = 1;
    await loadPage();
  }
  filterSet.addEventListener('change', async () => {
    clear(filterLabel).append(h('option', { value: '' }, 'any label'));
    const s = setsById.get(filterSet.value);
    for (const l of s?.labels || []) filterLabel.append(h('option', { value: l.name }, l.name));
    await applyFilters();
  });
  filterState.addEventListener('change', applyFilters);
  filterLabel.addEventListener('change', applyFilters);

  async function loadPage() {
    let page;
    if (filtered) {
      page = { items: filtered.slice(pageNo * PAGE, (pageNo + 1) * PAGE), next_cursor: (pageNo + 1) * PAGE < filtered.length ? 'more' : null };
    } else {
      const c = cursors[pageNo];
      page = await api(`/api/v1/datasets/${id}/images?limit=${PAGE}${c ? `&cursor=${c}` : ''}`);
    }
    clear(grid);
    for (const img of page.items) {
      grid.append(h('figure', { class: 'thumb' },
        h('img', { src: sized(img.url, 'thumb'), alt: img.name, loading: 'lazy', width: 150, height: 120 }),
        h('figcaption', { title: `${img.name} · ${img.width}×${img.height}` }, img.name)));
    }
    if (!page.items.length) grid.append(h('p', { class: 'muted' }, 'No images yet.'));
    nextCursor = page.next_cursor;
    prev.disabled = pageNo === 0;
    next.disabled = nextCursor == null;
    pageInfo.textContent = `page ${pageNo + 1}`;
  }
  prev.addEventListener('click', () => { pageNo--; loadPage(); });
  next.addEventListener('click', () => { cursors[++pageNo] = nextCursor; loadPage(); });
  async function refresh() {
    const d = await api(`/api/v1/datasets/${id}`);
    dataset.image_count = d.image_count;
    count.textContent = `${d.image_count} images`;
    await loadPage();
  }

  // --- annotation sets
  const sets = h('ul', { id: 'sets' });
  const setsById = new Map();
  async function loadSets() {
    const page = await api(`/api/v1/annotation-sets?dataset=${id}`);
    clear(sets);
    for (const s of page.items) {
      if (!setsById.has(String(s.id))) filterSet.append(h('option', { value: String(s.id) }, s.name));
      setsById.set(String(s.id), s);
    }
    for (const s of page.items) {
      sets.append(h('li', null, h('a', { href: `/sets/${s.id}/tasks`, 'data-link': true }, s.name),
        ' ', h('span', { class: 'muted' }, s.labels.map((l) => l.name).join(', '))));
    }
    if (!page.items.length) sets.append(h('li', { class: 'muted' }, 'None yet.'));
  }

  el.append(
    h('p', null, h('a', { href: '/datasets', 'data-link': true }, '← Datasets')),
    h('div', { class: 'row title-row' }, title, count),
    h('section', { class: 'card', 'aria-labelledby': 'sets-h' },
      h('h2', { id: 'sets-h' }, 'Annotation sets'), sets,
      h('a', { class: 'button', href: `/sets/new?dataset=${id}`, 'data-link': true }, 'New annotation set')),
    h('section', { class: 'card', 'aria-labelledby': 'up-h' }, h('h2', { id: 'up-h' }, 'Upload'), zone, jobsBox),
    h('section', { 'aria-labelledby': 'img-h' }, h('div', { class: 'row' }, h('h2', { id: 'img-h' }, 'Images'), prev, pageInfo, next), filters, grid));
  await Promise.all([loadPage(), loadSets(), loadJobs()]);
  ctx.setLeaveGuard((unloading) => {
    const busy = uploads.querySelector(':scope > li:not([data-state="done"])');
    return !busy || (!unloading && confirm('Uploads are still running. Leave and cancel them?'));
  });
  return () => ac.abort();
}
