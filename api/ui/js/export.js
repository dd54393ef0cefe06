// The export dialog: format and options, the job's progress, the download link; past exports.

import { api, followJob } from './api.js';
import { clear, field, fmtBytes, fmtTime, h, stateBadge } from './dom.js';

const FORMATS = [
  ['coco', 'COCO JSON'], ['voc', 'Pascal VOC XML'], ['yolo', 'YOLO (detection)'], ['yolo-segment', 'YOLO segmentation'],
  ['yolo-pose', 'YOLO pose'], ['yolo-darknet', 'YOLO Darknet'], ['cvat', 'CVAT XML'], ['labelme', 'LabelMe JSON'], ['csv', 'CSV'],
];

export function openExport(set) {
  const format = h('select', { id: 'export-format' }, FORMATS.map(([v, t]) => h('option', { value: v }, t)));
  const images = h('input', { type: 'checkbox', id: 'export-images', checked: true });
  const accepted = h('input', { type: 'checkbox', id: 'export-accepted' });
  const train = h('input', { type: 'number', min: 0, max: 100, value: 0, id: 'split-train', size: 4 });
  const val = h('input', { type: 'number', min: 0, max: 100, value: 0, id: 'split-val', size: 4 });
  const test = h('input', { type: 'number', min: 0, max: 100, value: 0, id: 'split-test', size: 4 });
  const seed = h('input', { type: 'number', value: 0, id: 'split-seed', size: 6 });
  const source = h('select', { id: 'export-source' },
    [['auto', 'ground truth, else the consensus, else the task furthest along'], ['consensus', 'the consensus where several annotators labelled'],
      ['tasks', 'the task furthest along (one version)'], ['annotator', 'one annotator only']].map(([v, t]) => h('option', { value: v }, t)));
  const annotator = h('input', { id: 'export-annotator', size: 12, disabled: true });
  source.addEventListener('change', () => { annotator.disabled = source.value !== 'annotator'; });
  const agreement = h('input', { type: 'checkbox', id: 'export-agreement' });
  const status = h('div', { id: 'export-status', 'aria-live': 'polite' });
  const err = h('p', { class: 'error', role: 'alert' });
  const past = h('div', { id: 'export-history' });
  const start = h('button', { type: 'button', class: 'primary', id: 'export-start' }, 'Start export');
  const close = h('button', { type: 'button', id: 'export-close' }, 'Close');
  const ac = new AbortController();
  const dlg = h('dialog', { class: 'modal', 'aria-labelledby': 'export-title' },
    h('h2', { id: 'export-title' }, `Export ${set.name}`),
    field('Format', format),
    h('label', null, images, ' include the images'), h('br'),
    h('label', null, accepted, ' only accepted tasks'), h('br'),
    field('Shapes from', source), field('Annotator', annotator),
    h('label', null, agreement, ' add quality.csv (each image\'s source and agreement)'),
    h('fieldset', { class: 'row', style: { border: 0, padding: 0 } }, h('legend', null, 'Splits (%; all 0: one subset)'),
      field('train', train), field('val', val), field('test', test), field('seed', seed)),
    err, status, h('div', { class: 'actions' }, close, start), past);
  close.addEventListener('click', () => { ac.abort(); dlg.close(); dlg.remove(); });
  dlg.addEventListener('close', () => { ac.abort(); dlg.remove(); });
  start.addEventListener('click', async () => {
    err.textContent = '';
    const splits = {};
    for (const [k, input] of [['train', train], ['val', val], ['test', test]]) if (Number(input.value) > 0) splits[k] = Number(input.value) / 100;
    start.disabled = true;
    try {
      const job = await api(`/api/v1/annotation-sets/${set.id}/exports`, {
        json: {
          format: format.value, include_images: images.checked, only_accepted: accepted.checked, splits: Object.keys(splits).length ? splits : null, seed: Number(seed.value),
          source: source.value, annotator: source.value === 'annotator' ? annotator.value.trim() : null, include_agreement: agreement.checked,
        },
      });
      const final = await followJob(job.id, (j) => showJob(status, j), ac.signal);
      showJob(status, final);
      loadPast();
    } catch (e) { err.textContent = e.message; }
    start.disabled = false;
  });
  async function loadPast() {
    try {
      const page = await api(`/api/v1/jobs?annotation_set=${set.id}&limit=10`);
      clear(past);
      const exports = page.items.filter((j) => j.kind === 'export');
      if (!exports.length) return;
      past.append(h('h3', null, 'Earlier exports'), h('ul', null, exports.map((j) => h('li', null, stateBadge(j.state), ' ', fmtTime(j.created_ms), ' ',
        j.result?.url ? h('a', { href: j.result.url, download: j.result.file_name || '' }, j.result.file_name || 'download') : (j.error || '')))));
    } catch { /* older nodes have no jobs */ }
  }
  document.body.append(dlg);
  dlg.showModal();
  loadPast();
}

function showJob(el, j) {
  const p = j.progress || {};
  clear(el).append(h('p', null, stateBadge(j.state), ` ${p.images_exported ?? 0} images, ${p.shapes_exported ?? 0} shapes exported`));
  if (j.error) el.append(h('p', { class: 'error' }, j.error));
  if (j.result?.url) {
    el.append(h('p', null, h('a', { class: 'button primary', id: 'export-download', href: j.result.url, download: j.result.file_name || '' },
      `Download ${j.result.file_name || 'export'} (${fmtBytes(j.result.size)})`)));
    for (const line of j.result.report || []) el.append(h('div', { class: 'muted' }, line));
  }
}
