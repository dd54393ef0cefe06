// The annotation set editor: its reviewers, labels with colours, allowed shape kinds, attributes,
// keypoint names and skeleton edges. Used for new sets (/sets/new?dataset=ID) and the Schema tab
// of a set.

import { api } from './api.js';
import { clear, field, h, toast } from './dom.js';

export const KINDS = [
  ['rectangle', 'Rectangle'], ['rotated_rectangle', 'Rotated rectangle'], ['polygon', 'Polygon'],
  ['polyline', 'Polyline'], ['points', 'Keypoints'], ['tag', 'Tag (image-level)'],
];
const PALETTE = ['#e6194b', '#3cb44b', '#4363d8', '#f58231', '#911eb4', '#42d4f4', '#f032e6', '#9a6324', '#469990'];
let seq = 0;

function attrRow(a = { name: '', type: 'select', options: [], required: false }) {
  const n = ++seq;
  const name = h('input', { value: a.name, 'aria-label': 'Attribute name', class: 'attr-name', size: 12 });
  const type = h('select', { 'aria-label': 'Attribute type', class: 'attr-type' },
    ['select', 'checkbox', 'number', 'text'].map((t) => h('option', { value: t, selected: a.type === t }, t)));
  const options = h('input', { value: (a.options || []).join(', '), 'aria-label': 'Options (comma separated)', class: 'attr-options', size: 18 });
  const min = h('input', { type: 'number', value: a.min ?? '', 'aria-label': 'Minimum', size: 5, class: 'attr-min' });
  const max = h('input', { type: 'number', value: a.max ?? '', 'aria-label': 'Maximum', size: 5, class: 'attr-max' });
  const required = h('input', { type: 'checkbox', checked: !!a.required, id: `req-${n}`, class: 'attr-required' });
  const def = h('input', { value: a.default == null ? '' : String(a.default), 'aria-label': 'Default', size: 8, class: 'attr-default' });
  const row = h('div', { class: 'attr-row' },
    field('Attribute', name), field('Type', type), field('Options', options), field('Min', min), field('Max', max),
    field('Default', def), h('label', null, required, ' required'),
    h('button', { type: 'button', onclick: () => row.remove(), 'aria-label': 'Remove attribute' }, '✕'));
  const sync = () => {
    options.parentElement.hidden = type.value !== 'select';
    min.parentElement.hidden = max.parentElement.hidden = type.value !== 'number';
  };
  type.addEventListener('change', sync);
  sync();
  row.read = () => {
    const out = { name: name.value.trim(), type: type.value, required: required.checked };
    if (type.value === 'select') out.options = options.value.split(',').map((s) => s.trim()).filter(Boolean);
    if (type.value === 'number') { out.min = min.value === '' ? null : Number(min.value); out.max = max.value === '' ? null : Number(max.value); }
    const d = def.value.trim();
    if (d !== '') out.default = type.value === 'checkbox' ? d === 'true' : type.value === 'number' ? Number(d) : d;
    return out;
  };
  return row;
}

function labelRow(l, index) {
  const n = ++seq;
  const name = h('input', { value: l.name, required: true, class: 'label-name', maxlength: 100 });
  const color = h('input', { type: 'color', value: l.color, class: 'label-color' });
  const kinds = h('fieldset', { class: 'kinds' }, h('legend', null, 'Shape kinds'),
    KINDS.map(([k, text]) => h('label', null,
      h('input', { type: 'checkbox', value: k, checked: l.kinds.includes(k), class: 'kind' }), ` ${text}`)));
  const keypoints = h('input', { value: (l.keypoints || []).join(', '), class: 'label-keypoints', size: 30 });
  const skeleton = h('input', {
    value: (l.skeleton || []).map(([a, b]) => `${l.keypoints[a]}-${l.keypoints[b]}`).join(', '), class: 'label-skeleton', size: 30,
  });
  const attrs = h('div', { class: 'attrs' }, (l.attributes || []).map((a) => attrRow(flatAttr(a))));
  const kp = h('div', { class: 'row' },
    field('Keypoint names (comma separated, in order)', keypoints),
    field('Skeleton edges (e.g. head-neck, neck-tail)', skeleton));
  const row = h('div', { class: 'label-row', dataset: { label: String(index) } },
    h('div', { class: 'row' }, field('Label name', name), field('Colour', color),
      h('button', { type: 'button', class: 'danger', onclick: () => row.remove() }, 'Remove label')),
    kinds, kp, attrs,
    h('button', { type: 'button', onclick: () => attrs.append(attrRow()) }, 'Add attribute'));
  const syncKp = () => { kp.hidden = !kinds.querySelector('input[value="points"]').checked; };
  kinds.addEventListener('change', syncKp);
  syncKp();
  row.read = () => {
    const names = keypoints.value.split(',').map((s) => s.trim()).filter(Boolean);
    const kindsOut = [...kinds.querySelectorAll('input:checked')].map((i) => i.value);
    const edges = [];
    if (kindsOut.includes('points')) {
      for (const pair of skeleton.value.split(',').map((s) => s.trim()).filter(Boolean)) {
        const [a, b] = pair.split('-').map((s) => s.trim());
        const ia = /^\d+$/.test(a) ? Number(a) : names.indexOf(a);
        const ib = /^\d+$/.test(b) ? Number(b) : names.indexOf(b);
        if (ia < 0 || ib < 0) throw new Error(`label ${name.value}: skeleton edge "${pair}" names an unknown keypoint`);
        edges.push([ia, ib]);
      }
    }
    return {
      name: name.value.trim(), color: color.value, kinds: kindsOut,
      attributes: [...attrs.children].map((r) => r.read()).filter((a) => a.name).map(unflatAttr),
      keypoints: kindsOut.includes('points') ? names : [], skeleton: edges,
    };
  };
  void n;
  return row;
}

// The API's attribute form is {name, type, options | min,max, required, default} (type flattened).
const flatAttr = (a) => ({ ...a });
function unflatAttr(a) {
  const out = { name: a.name, type: a.type, required: a.required };
  if (a.type === 'select') out.options = a.options;
  if (a.type === 'number') { out.min = a.min; out.max = a.max; }
  if (a.default !== undefined) out.default = a.default;
  return out;
}

/** The editor form; `set` is null for a new set on `datasetId`. */
export function schemaEditor({ set, datasetId, onSaved }) {
  const name = h('input', { value: set?.name || '', required: true, id: 'set-name', maxlength: 200 });
  const reviewers = h('input', { value: (set?.reviewers || []).join(', '), id: 'set-reviewers', size: 40 });
  const labels = h('div', { id: 'labels' });
  const err = h('p', { class: 'error', role: 'alert' });
  const initial = set?.labels?.length ? set.labels : [{ name: '', color: PALETTE[0], kinds: ['rectangle'] }];
  initial.forEach((l, i) => labels.append(labelRow(l, i)));
  const add = h('button', { type: 'button', id: 'add-label' }, 'Add label');
  add.addEventListener('click', () => {
    const i = labels.children.length;
    const row = labelRow({ name: '', color: PALETTE[i % PALETTE.length], kinds: ['rectangle'] }, i);
    labels.append(row);
    row.querySelector('.label-name').focus();
  });
  const save = h('button', { type: 'submit', class: 'primary' }, set ? 'Save schema' : 'Create annotation set');
  const form = h('form', { class: 'card', 'aria-label': 'Label schema' },
    field('Annotation set name', name),
    field('Reviewers (user names, comma separated; managers review every set)', reviewers),
    h('h2', null, 'Labels'), labels, add, err, h('p', null, save));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    err.textContent = '';
    try {
      const body = {
        name: name.value.trim(),
        labels: [...labels.children].map((r) => r.read()),
        reviewers: reviewers.value.split(',').map((r) => r.trim()).filter(Boolean),
      };
      const saved = set
        ? await api(`/api/v1/annotation-sets/${set.id}`, { method: 'PATCH', json: body })
        : await api(`/api/v1/datasets/${datasetId}/annotation-sets`, { json: body });
      toast(set ? 'Schema saved' : 'Annotation set created', 'ok');
      onSaved?.(saved);
    } catch (e2) { err.textContent = e2.message; }
  });
  return form;
}

export async function render(el, _params, ctx) {
  const datasetId = ctx.query.get('dataset');
  const d = await api(`/api/v1/datasets/${datasetId}`);
  clear(el).append(
    h('p', null, h('a', { href: `/datasets/${datasetId}`, 'data-link': true }, `← ${d.name}`)),
    h('h1', null, 'New annotation set'),
    schemaEditor({ datasetId, onSaved: (s) => ctx.navigate(`/sets/${s.id}/tasks`) }));
}
