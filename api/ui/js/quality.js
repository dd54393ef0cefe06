// The Quality tab of an annotation set: its rules (honeypot share, consensus quorum, matching
// threshold, review threshold), its ground-truth images, the honeypot scores and consensus
// agreement per annotator and per task, and the least agreed images with every version overlaid
// on the image, where a reviewer picks the consensus. The rules behind the figures are in
// docs/quality.md.

import { api, atLeast } from './api.js';
import { clear, field, h, s, toast } from './dom.js';

const pct = (x) => (x === null || x === undefined ? '—' : `${Math.round(x * 1000) / 10} %`);
const num = (x) => (x === null || x === undefined ? '—' : (Math.round(x * 1000) / 1000).toString());
const short = (sha) => `${sha.slice(0, 10)}…`;

// Per-annotator figures as a table (also shown on the dashboard).
export function annotatorTable(report) {
  const rows = report.annotators;
  return h('table', { id: 'quality-annotators', 'aria-label': 'Quality per annotator' },
    h('thead', null, h('tr', null, ['Annotator', 'Honeypots scored', 'Score', 'Precision', 'Recall', 'Mean IoU / OKS', 'Attributes right', 'Agreement with consensus'].map((t) => h('th', null, t)))),
    h('tbody', null, rows.length
      ? rows.map((a) => h('tr', { dataset: { annotator: a.annotator } },
        h('td', null, a.annotator),
        h('td', { dataset: { col: 'honeypots' } }, a.honeypots ? String(a.honeypots.images) : '0'),
        h('td', { dataset: { col: 'score' } }, pct(a.honeypots?.score)),
        h('td', null, pct(a.honeypots?.precision)),
        h('td', null, pct(a.honeypots?.recall)),
        h('td', null, num(a.honeypots?.mean_similarity)),
        h('td', null, pct(a.honeypots?.attribute_accuracy)),
        h('td', { dataset: { col: 'agreement' } }, pct(a.agreement))))
      : h('tr', null, h('td', { colspan: '8', class: 'muted' }, 'No honeypot or overlapping image has been annotated yet.'))));
}

export async function render(el, set) {
  const box = h('div', { id: 'quality' });
  el.append(box);
  const canManage = atLeast('manager');

  // --- rules
  const q = set.quality || {};
  const fraction = h('input', { type: 'number', id: 'honeypot-percent', min: 0, max: 50, step: 1, value: Math.round((q.honeypot_fraction || 0) * 100) });
  const quorum = h('input', { type: 'number', id: 'quorum', min: 1, max: 16, step: 1, value: q.quorum ?? '', placeholder: 'majority' });
  const similarity = h('input', { type: 'number', id: 'min-similarity', min: 0.05, max: 1, step: 0.05, value: q.min_similarity ?? 0.5 });
  const below = h('input', { type: 'number', id: 'review-below', min: 0, max: 1, step: 0.05, value: q.review_below ?? '', placeholder: 'off' });
  const ruleError = h('p', { class: 'error', role: 'alert' });
  const rules = h('form', { class: 'card', 'aria-label': 'Quality rules' },
    h('h2', null, 'Rules'),
    h('p', { class: 'muted' }, 'Honeypots are ground-truth images mixed into every new task; annotators cannot tell them apart. With overlap, each image gets a consensus of its annotators.'),
    h('div', { class: 'row' },
      field('Honeypots (% of each new task)', fraction),
      field('Consensus quorum (annotators)', quorum),
      field('Match at IoU / OKS ≥', similarity),
      field('Review first below score', below),
      canManage ? h('button', { type: 'submit', class: 'primary', id: 'save-rules' }, 'Save rules') : null),
    ruleError);
  rules.addEventListener('submit', async (e) => {
    e.preventDefault();
    ruleError.textContent = '';
    const policy = {
      honeypot_fraction: Number(fraction.value) / 100,
      min_similarity: Number(similarity.value),
      oks_sigma: q.oks_sigma ?? 0.1,
    };
    if (quorum.value !== '') policy.quorum = Number(quorum.value);
    if (below.value !== '') policy.review_below = Number(below.value);
    try {
      const saved = await api(`/api/v1/annotation-sets/${set.id}/quality`, { method: 'PUT', json: policy });
      set.quality = saved.quality;
      toast('Quality rules saved', 'ok');
    } catch (e2) { ruleError.textContent = e2.message; }
  });

  // --- ground truth
  const refs = h('tbody');
  const fromTask = h('input', { type: 'number', min: 1, id: 'ground-truth-task', placeholder: 'task id' });
  const truthError = h('p', { class: 'error', role: 'alert' });
  const truthForm = h('form', { class: 'row', 'aria-label': 'Ground truth from a task' },
    field('From an accepted task', fromTask, 'Its images become ground truth with their accepted shapes (draw them in a task you review, then accept it).'),
    h('button', { type: 'submit', id: 'add-ground-truth' }, 'Mark as ground truth'));
  truthForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    truthError.textContent = '';
    try {
      const r = await api(`/api/v1/annotation-sets/${set.id}/ground-truth`, { json: { task: Number(fromTask.value) } });
      toast(`${r.images.length} images marked as ground truth`, 'ok');
      await loadReferences();
    } catch (e2) { truthError.textContent = e2.message; }
  });
  async function loadReferences() {
    const r = await api(`/api/v1/annotation-sets/${set.id}/ground-truth`);
    clear(refs);
    for (const g of r.items) {
      const remove = canManage ? h('button', { type: 'button', class: 'danger', 'aria-label': `Remove ground truth of ${short(g.image)}` }, 'Remove') : null;
      remove?.addEventListener('click', async () => {
        try {
          await api(`/api/v1/annotation-sets/${set.id}/ground-truth/${g.image}`, { method: 'DELETE' });
          await loadReferences();
        } catch (e) { toast(e.message, 'error'); }
      });
      refs.append(h('tr', { dataset: { image: g.image } }, h('td', null, h('code', null, short(g.image))), h('td', null, String(g.shape_count)), h('td', null, g.source), h('td', null, g.set_by), h('td', null, remove)));
    }
    if (!r.items.length) refs.append(h('tr', null, h('td', { colspan: '5', class: 'muted' }, 'No ground truth yet.')));
  }
  const truth = h('section', { class: 'card', 'aria-label': 'Ground truth' },
    h('h2', null, 'Ground truth'),
    h('table', { id: 'ground-truth' }, h('thead', null, h('tr', null, ['Image', 'Shapes', 'From', 'Set by', ''].map((t) => h('th', null, t)))), refs),
    canManage ? [truthForm, truthError] : null);

  // --- figures
  const figures = h('section', { 'aria-label': 'Quality figures' });
  const overlay = h('section', { id: 'consensus-overlay', 'aria-label': 'Versions and consensus', hidden: true });
  async function loadFigures() {
    const report = await api(`/api/v1/annotation-sets/${set.id}/quality`);
    clear(figures);
    figures.append(
      h('div', { class: 'stats' },
        h('div', { class: 'stat' }, h('b', { id: 'mean-agreement' }, pct(report.mean_agreement)), 'mean agreement'),
        h('div', { class: 'stat' }, h('b', null, String(report.consensus_images)), 'images with a consensus'),
        h('div', { class: 'stat' }, h('b', null, String(report.references)), 'ground-truth images'),
        h('div', { class: 'stat' }, h('b', { id: 'quality-pending' }, String(report.pending)), 'being recomputed')),
      h('h2', null, 'Annotators'), annotatorTable(report),
      h('h2', null, 'Tasks'),
      h('table', { id: 'quality-tasks', 'aria-label': 'Quality per task' },
        h('thead', null, h('tr', null, ['Task', 'Annotator', 'Honeypot score', 'Agreement', ''].map((t) => h('th', null, t)))),
        h('tbody', null, report.tasks.map((t) => h('tr', { dataset: { task: String(t.task) } },
          h('td', null, h('a', { href: `/tasks/${t.task}`, 'data-link': true }, `#${t.task}`)), h('td', null, t.annotator),
          h('td', null, pct(t.honeypots?.score)), h('td', null, pct(t.agreement)),
          h('td', null, t.review_first ? h('span', { class: 'badge st-rejected' }, 'review first') : null))))),
      h('h2', null, 'Least agreed images'),
      h('ul', { id: 'least-agreed', class: 'plain' }, report.lowest_agreement.map((a) => {
        const b = h('button', { type: 'button', class: 'link', dataset: { image: a.image } }, `${short(a.image)} · ${pct(a.agreement)} · ${a.versions} versions`);
        b.addEventListener('click', () => showImage(a.image).catch((e) => toast(e.message, 'error')));
        return h('li', null, b);
      })));
  }

  // One image: every version and the consensus drawn over it; pick a version as the consensus.
  const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#9467bd', '#8c564b', '#e377c2'];
  async function showImage(sha) {
    const v = await api(`/api/v1/annotation-sets/${set.id}/quality/images/${sha}`);
    clear(overlay);
    overlay.hidden = false;
    overlay.append(h('h2', null, `Image ${v.name || short(sha)}`));
    for (const chunk of v.chunks) {
      const w = v.width || 100;
      const ht = v.height || 100;
      const svg = s('svg', { viewBox: `0 0 ${w} ${ht}`, class: 'overlay', role: 'img', 'aria-label': `Versions of ${v.name || sha} in chunk ${chunk.chunk}` });
      if (v.url) svg.append(s('image', { href: v.url, x: 0, y: 0, width: w, height: ht }));
      const versions = await Promise.all(chunk.versions.map(async (ver) => {
        const a = await api(`/api/v1/tasks/${ver.task}/images/${sha}/annotations`).catch(() => ({ shapes: [] }));
        return { ...ver, shapes: a.shapes || [] };
      }));
      versions.forEach((ver, i) => ver.shapes.forEach((shape) => svg.append(outline(shape, COLORS[i % COLORS.length], false))));
      const consensus = chunk.pinned ? chunk.pinned.shapes : (chunk.consensus || []).map((m) => m.shape);
      consensus.forEach((shape) => svg.append(outline(shape, '#000000', true)));
      const legend = h('ul', { class: 'plain legend' }, versions.map((ver, i) => {
        const pick = h('button', { type: 'button', dataset: { pick: ver.annotator } }, `Use ${ver.annotator}'s version`);
        pick.addEventListener('click', async () => {
          try {
            await api(`/api/v1/annotation-sets/${set.id}/quality/images/${sha}/consensus`, { method: 'PUT', json: { chunk: chunk.chunk, task: ver.task } });
            toast(`Consensus: ${ver.annotator}'s version`, 'ok');
            await showImage(sha);
          } catch (e) { toast(e.message, 'error'); }
        });
        return h('li', null, h('span', { class: 'swatch', style: { background: COLORS[i % COLORS.length] } }), ` ${ver.annotator} · agreement with consensus ${pct(ver.with_consensus)} `, pick);
      }));
      const state = chunk.pinned
        ? h('p', { id: 'consensus-state' }, `Consensus picked by ${chunk.pinned.by}: ${chunk.pinned.source}. `)
        : h('p', { id: 'consensus-state' }, `Consensus computed from ${chunk.versions.length} versions (agreement ${pct(chunk.agreement)}); black dashed.`);
      if (chunk.pinned) {
        const undo = h('button', { type: 'button', id: 'unpin' }, 'Back to the computed consensus');
        undo.addEventListener('click', async () => {
          try {
            await api(`/api/v1/annotation-sets/${set.id}/quality/images/${sha}/consensus?chunk=${chunk.chunk}`, { method: 'DELETE' });
            await showImage(sha);
          } catch (e) { toast(e.message, 'error'); }
        });
        state.append(undo);
      }
      overlay.append(h('div', { class: 'card' }, svg, legend, state));
    }
    overlay.scrollIntoView({ block: 'nearest' });
  }

  box.append(rules, truth, figures, overlay);
  await Promise.all([loadReferences(), loadFigures()]);
  const timer = setInterval(() => { if (!document.hidden) loadFigures().catch(() => {}); }, 10000);
  return () => clearInterval(timer);
}

// A shape's outline as SVG (rectangles, rotated rectangles, polygons, lines, keypoints).
function outline(shape, color, dashed) {
  const style = { stroke: color, fill: 'none', 'stroke-width': dashed ? 3 : 2, 'vector-effect': 'non-scaling-stroke', 'stroke-dasharray': dashed ? '6 4' : null };
  const p = shape.points || [];
  switch (shape.kind) {
    case 'rectangle': {
      const [[x0, y0], [x1, y1]] = p;
      return s('rect', { x: Math.min(x0, x1), y: Math.min(y0, y1), width: Math.abs(x1 - x0), height: Math.abs(y1 - y0), ...style });
    }
    case 'rotated_rectangle': {
      const [[x0, y0], [x1, y1]] = p;
      const cx = (x0 + x1) / 2; const cy = (y0 + y1) / 2;
      return s('rect', { x: Math.min(x0, x1), y: Math.min(y0, y1), width: Math.abs(x1 - x0), height: Math.abs(y1 - y0), transform: `rotate(${shape.angle || 0} ${cx} ${cy})`, ...style });
    }
    case 'polygon': return s('polygon', { points: p.map((q) => q.join(',')).join(' '), ...style });
    case 'polyline': return s('polyline', { points: p.map((q) => q.join(',')).join(' '), ...style });
    case 'points': return s('g', null, p.map(([x, y]) => s('circle', { cx: x, cy: y, r: 3, ...style })));
    default: return s('g', null);
  }
}

