// The review queue: submitted tasks of every annotation set, and the ones I am reviewing, with
// each task's honeypot score and agreement; tasks scoring below their set's review threshold
// come first (the server orders them) and are flagged.

import { all, api, currentSession } from './api.js';
import { clear, h, stateBadge, toast } from './dom.js';

export async function render(el, _params, ctx) {
  const order = new URLSearchParams(location.search).get('order') === 'agreement' ? 'agreement' : 'id';
  const orderSelect = h('select', { id: 'review-order', 'aria-label': 'Order' },
    h('option', { value: 'id', selected: order === 'id' }, 'review first, then oldest'),
    h('option', { value: 'agreement', selected: order === 'agreement' }, 'review first, then least agreement'));
  orderSelect.addEventListener('change', () => ctx.navigate(orderSelect.value === 'agreement' ? '/review?order=agreement' : '/review'));
  el.append(h('div', { class: 'row' }, h('h1', null, 'Review'), orderSelect));
  const tbody = h('tbody');
  el.append(h('table', { id: 'review-queue', 'aria-label': 'Tasks to review' },
    h('thead', null, h('tr', null, ['Task', 'Annotation set', 'Annotator', 'Images', 'State', 'Quality', ''].map((t) => h('th', null, t)))), tbody));
  const me = currentSession().username;
  let rows;
  try {
    rows = order === 'agreement'
      ? (await api('/api/v1/review/tasks?order=agreement&limit=1000')).items
      : await all('/api/v1/review/tasks');
  } catch (e) {
    el.append(h('p', { class: 'error' }, `The review queue could not be read: ${e.message}`));
    return;
  }
  clear(tbody);
  for (const t of rows) {
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
    const q = t.quality || {};
    const pct = (x) => (x === null || x === undefined ? null : `${Math.round(x * 100)} %`);
    const figures = [pct(q.honeypots?.score) && `honeypots ${pct(q.honeypots.score)}`, pct(q.agreement) && `agreement ${pct(q.agreement)}`].filter(Boolean).join(' · ');
    const quality = h('td', { dataset: { col: 'quality' } }, figures || '—', q.review_first ? [' ', h('span', { class: 'badge st-rejected' }, 'review first')] : null);
    const setCell = h('td', null, t.set_name || `#${t.annotation_set}`, ' ',
      h('a', { href: `/quality/${t.annotation_set}`, 'data-link': true, 'aria-label': `Quality of ${t.set_name || `set ${t.annotation_set}`}` }, 'quality'));
    tbody.append(h('tr', { dataset: { task: String(t.id), reviewFirst: String(!!q.review_first) } }, h('td', null, `#${t.id}`), setCell, h('td', null, t.assignee || ''),
      h('td', null, t.image_count), h('td', null, stateBadge(t.state)), quality, cell));
  }
  if (!rows.length) tbody.append(h('tr', null, h('td', { colspan: 7, class: 'muted' }, 'Nothing to review.')));
}
