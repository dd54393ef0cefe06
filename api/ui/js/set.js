// An annotation set: Tasks (split, assign, reassign, review queue), Schema, Dashboard, Quality;
// Export.

import { all, api, atLeast } from './api.js';
import { clear, field, h, modal, progressBar, stateBadge, toast } from './dom.js';

export async function render(el, [id, tab = 'tasks'], ctx) {
  const set = await api(`/api/v1/annotation-sets/${id}`);
  const dataset = await api(`/api/v1/datasets/${set.dataset_id}`).catch(() => ({ name: `dataset ${set.dataset_id}` }));
  const tabs = h('nav', { class: 'tabs', 'aria-label': 'Annotation set' },
    [['tasks', 'Tasks'], ['schema', 'Schema'], ['dashboard', 'Dashboard'], ['quality', 'Quality']].map(([t, text]) =>
      h('a', { href: `/sets/${id}/${t}`, 'data-link': true, 'aria-current': t === tab ? 'page' : null }, text)));
  const exportButton = h('button', { type: 'button', id: 'export-open' }, 'Export…');
  exportButton.addEventListener('click', async () => (await import('./export.js')).openExport(set));
  const body = h('div');
  el.append(
    h('p', null, h('a', { href: `/datasets/${set.dataset_id}`, 'data-link': true }, `← ${dataset.name}`)),
    h('div', { class: 'row title-row' }, h('h1', null, set.name), h('span', { class: 'spacer', style: { flex: 1 } }), exportButton),
    tabs, body);
  if (tab === 'schema') {
    const { schemaEditor } = await import('./schema.js');
    body.append(schemaEditor({ set, onSaved: () => ctx.navigate(`/sets/${id}/schema`) }));
  } else if (tab === 'dashboard') {
    return (await import('./dashboard.js')).renderDashboard(body, set);
  } else if (tab === 'quality') {
    return (await import('./quality.js')).render(body, set);
  } else {
    return renderTasks(body, set, ctx);
  }
}

/** How many image reads a page may spend on per-task progress bars. */
export const PROGRESS_BUDGET = 2000;

/** Images with at least one shape, per task (one annotation read per image, 6 at a time). */
export async function taskProgress(taskId, signal) {
  const t = await api(`/api/v1/tasks/${taskId}`, { signal });
  let done = 0;
  let next = 0;
  await Promise.all(Array.from({ length: 6 }, async () => {
    while (next < t.images.length) {
      const img = t.images[next++];
      const a = await api(`/api/v1/tasks/${taskId}/images/${img.sha256}/annotations`, { signal });
      if (a.shapes?.length) done++;
    }
  }));
  return { done, total: t.images.length };
}

async function renderTasks(el, set, ctx) {
  const ac = new AbortController();
  const chunk = h('input', { type: 'number', min: 1, max: 10000, value: 50, id: 'chunk-size', required: true });
  const overlap = h('input', { type: 'number', min: 1, max: 16, value: 1, id: 'overlap', required: true });
  const assignees = h('input', { id: 'assignees', size: 40, placeholder: 'ann1, ann2 (empty: the pool)', list: 'known-users' });
  const users = h('datalist', { id: 'known-users' });
  const err = h('p', { class: 'error', role: 'alert' });
  if (atLeast('admin')) {
    all('/api/v1/users').then((us) => us.forEach((u) => users.append(h('option', { value: u.username }, u.role)))).catch(() => {});
  }
  const form = h('form', { class: 'card', 'aria-label': 'Split into tasks' },
    h('h2', null, 'Split into tasks'),
    h('p', { class: 'muted' }, 'Only images that no task of this set holds are split: split again after adding images. Archive a task to split its images again.'),
    h('div', { class: 'row' },
      field('Chunk size (images per task)', chunk), field('Overlap (annotators per image)', overlap),
      field('Assignees (comma separated)', assignees), users,
      h('button', { type: 'submit', class: 'primary', id: 'split' }, 'Split')), err);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    err.textContent = '';
    try {
      const names = assignees.value.split(',').map((s) => s.trim()).filter(Boolean);
      const r = await api(`/api/v1/annotation-sets/${set.id}/tasks/split`,
        { json: { chunk_size: Number(chunk.value), overlap: Number(overlap.value), assignees: names } });
      const left = r.already_tasked ? ` (${r.already_tasked} already had a task and were left out)` : '';
      toast(`${r.tasks.length} tasks created from ${r.images} images${left}`, 'ok', 8000);
      load();
    } catch (e2) { err.textContent = e2.message; }
  });

  const stateFilter = h('select', { id: 'state-filter' },
    ['', 'new', 'in_progress', 'submitted', 'in_review', 'accepted', 'rejected', 'archived'].map((s) => h('option', { value: s }, s ? s.replace('_', ' ') : 'all states')));
  stateFilter.addEventListener('change', () => load());
  const tbody = h('tbody');
  const table = h('table', { id: 'tasks', 'aria-label': 'Tasks' },
    h('thead', null, h('tr', null, ['Task', 'Chunk', 'Images', 'State', 'Progress', 'Assignee', 'Reviewer', ''].map((t) => h('th', null, t)))), tbody);
  let budget = 0;
  async function load() {
    const q = stateFilter.value ? `?state=${stateFilter.value}` : '';
    const tasks = await all(`/api/v1/annotation-sets/${set.id}/tasks${q}`);
    budget = PROGRESS_BUDGET;
    clear(tbody);
    for (const t of tasks) tbody.append(taskRow(t));
    if (!tasks.length) tbody.append(h('tr', null, h('td', { colspan: 8, class: 'muted' }, 'No tasks.')));
  }
  function taskRow(t) {
    const prog = progressBar(0, t.image_count, `task ${t.id} images annotated`);
    if (t.state === 'accepted') { prog.querySelector('.bar').style.width = '100%'; }
    // Per-image progress costs one read per image: only while the page stays small.
    if (budget >= t.image_count) {
      budget -= t.image_count;
      taskProgress(t.id, ac.signal).then(({ done, total }) => {
        prog.replaceWith(progressBar(done, total, `task ${t.id} images annotated`));
      }).catch(() => {});
    }
    const who = h('input', { value: t.assignee || '', 'aria-label': `Assignee of task ${t.id}`, size: 10, list: 'known-users' });
    const reassign = h('button', { type: 'button' }, 'Reassign');
    reassign.addEventListener('click', async () => {
      try {
        await api(`/api/v1/tasks/${t.id}/reassign`, { json: { assignee: who.value.trim() || null } });
        toast(`Task ${t.id} ${who.value.trim() ? `given to ${who.value.trim()}` : 'back in the pool'}`, 'ok');
        load();
      } catch (e) { toast(e.message, 'error'); }
    });
    const actions = h('td', null, t.state === 'archived' ? null : [who, ' ', reassign]);
    if (t.state === 'submitted') {
      const b = h('button', { type: 'button', class: 'primary' }, 'Review');
      b.addEventListener('click', async () => {
        try { await api(`/api/v1/tasks/${t.id}/review`, { method: 'POST' }); ctx.navigate(`/tasks/${t.id}`); } catch (e) { toast(e.message, 'error'); }
      });
      actions.append(' ', b);
    } else if (t.state === 'in_review') {
      actions.append(' ', h('a', { class: 'button', href: `/tasks/${t.id}`, 'data-link': true }, 'Open review'));
    } else {
      actions.append(' ', h('a', { href: `/tasks/${t.id}`, 'data-link': true }, 'View'));
    }
    if (t.state !== 'archived') {
      const archive = h('button', { type: 'button', class: 'danger', 'aria-label': `Archive task ${t.id}` }, 'Archive…');
      archive.addEventListener('click', async () => {
        const ok = await modal(`Archive task #${t.id}`,
          h('p', null, `Nobody can work on task #${t.id} any more. Its saved annotations and history are kept (and exported for images no other task has); its ${t.image_count} images can be split into a new task.`),
          [{ text: 'Cancel', value: false }, { text: 'Archive', value: true, class: 'danger' }]);
        if (!ok) return;
        try {
          await api(`/api/v1/tasks/${t.id}/archive`, { method: 'POST' });
          toast(`Task ${t.id} archived`, 'ok');
          load();
        } catch (e) { toast(e.message, 'error'); }
      });
      actions.append(' ', archive);
    }
    return h('tr', { dataset: { task: String(t.id), state: t.state } },
      h('td', null, `#${t.id}`), h('td', null, t.chunk), h('td', null, t.image_count), h('td', null, stateBadge(t.state)),
      h('td', null, prog), h('td', null, t.assignee || h('span', { class: 'muted' }, 'pool')), h('td', null, t.reviewer || ''), actions);
  }
  el.append(form, h('div', { class: 'row' }, h('h2', null, 'Tasks'), field('State', stateFilter)), table);
  await load();
  return () => ac.abort();
}
