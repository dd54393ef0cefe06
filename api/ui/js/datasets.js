// Datasets: the list and the create form.

import { api } from './api.js';
import { field, fmtTime, h } from './dom.js';

export async function render(el, _params, ctx) {
  const name = h('input', { name: 'name', required: true, maxlength: 200 });
  const err = h('p', { class: 'error', role: 'alert' });
  const form = h('form', { class: 'row card', 'aria-label': 'New dataset' },
    field('New dataset name', name), h('button', { type: 'submit', class: 'primary' }, 'Create dataset'), err);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    err.textContent = '';
    try {
      const d = await api('/api/v1/datasets', { json: { name: name.value.trim() } });
      ctx.navigate(`/datasets/${d.id}`);
    } catch (e2) { err.textContent = e2.message; }
  });
  const body = h('tbody');
  const more = h('button', { type: 'button', hidden: true }, 'Load more');
  el.append(h('h1', null, 'Datasets'), form,
    h('table', { 'aria-label': 'Datasets' },
      h('thead', null, h('tr', null, h('th', null, 'Name'), h('th', null, 'Images'), h('th', null, 'Created by'), h('th', null, 'Created'))),
      body),
    more);
  let cursor = null;
  async function load() {
    const page = await api(`/api/v1/datasets?limit=50${cursor != null ? `&cursor=${cursor}` : ''}`);
    for (const d of page.items) {
      body.append(h('tr', null,
        h('td', null, h('a', { href: `/datasets/${d.id}`, 'data-link': true }, d.name)),
        h('td', null, d.image_count), h('td', null, d.created_by), h('td', null, fmtTime(d.created_ms))));
    }
    if (!body.children.length) body.append(h('tr', null, h('td', { colspan: 4, class: 'muted' }, 'No datasets yet: create one above.')));
    cursor = page.next_cursor;
    more.hidden = cursor == null;
  }
  more.addEventListener('click', load);
  await load();
}
