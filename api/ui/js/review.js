// The review queue: submitted tasks of every annotation set, and the ones I am reviewing.

import { all, api, currentSession } from './api.js';
import { clear, h, stateBadge, toast } from './dom.js';

export async function render(el, _params, ctx) {
  el.append(h('h1', null, 'Review'));
  let sets;
  try {
    sets = await all('/api/v1/annotation-sets');
  } catch (e) {
    el.append(h('p', { class: 'error' }, `The review queue needs the list of annotation sets: ${e.message}`));
    return;
  }
  const tbody = h('tbody');
  el.append(h('table', { id: 'review-queue', 'aria-label': 'Tasks to review' },
    h('thead', null, h('tr', null, ['Task', 'Annotation set', 'Annotator', 'Images', 'State', ''].map((t) => h('th', null, t)))), tbody));
  const me = currentSession().username;
  const rows = [];
  for (const s of sets) {
    for (const state of ['submitted', 'in_review']) {
      for (const t of await all(`/api/v1/annotation-sets/${s.id}/tasks?state=${state}`)) rows.push([s, t]);
    }
  }
  clear(tbody);
  for (const [s, t] of rows) {
    const cell = h('td');
    if (t.state === 'submitted') {
      const b = h('button', { type: 'button', class: 'primary' }, 'Review');
      b.addEventListener('click', async () => {
        try { await api(`/api/v1/tasks/${t.id}/review`, { method: 'POST' }); ctx.navigate(`/tasks/${t.id}`); } catch (e) { toast(e.message, 'error'); }
      });
      cell.append(b);
    } else {
      cell.append(h('a', { class: 'button', href: `/tasks/${t.id}`, 'data-link': true }, t.reviewer === me ? 'Continue review' : `Open (${t.reviewer})`));
    }
    tbody.append(h('tr', { dataset: { task: String(t.id) } }, h('td', null, `#${t.id}`), h('td', null, s.name), h('td', null, t.assignee || ''),
      h('td', null, t.image_count), h('td', null, stateBadge(t.state)), cell));
  }
  if (!rows.length) tbody.append(h('tr', null, h('td', { colspan: 6, class: 'muted' }, 'Nothing to review.')));
}
