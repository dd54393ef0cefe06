// "My tasks": the caller's tasks (start, continue, submit) and the pool (claim).

import { all, api, currentSession } from './api.js';
import { clear, h, stateBadge, toast } from './dom.js';
import { pendingByTask } from './unsaved.js';

export async function render(el, _params, ctx) {
  const mine = h('tbody');
  const pool = h('tbody');
  el.append(h('h1', null, 'My tasks'),
    h('table', { id: 'my-tasks', 'aria-label': 'My tasks' },
      h('thead', null, h('tr', null, ['Task', 'Set', 'Images', 'State', ''].map((t) => h('th', null, t)))), mine),
    h('h2', null, 'Pool'), h('p', { class: 'muted' }, 'Unassigned tasks: claim one to work on it.'),
    h('table', { id: 'pool-tasks', 'aria-label': 'Pool' },
      h('thead', null, h('tr', null, ['Task', 'Set', 'Images', ''].map((t) => h('th', null, t)))), pool));

  const act = async (t, action) => {
    try {
      await api(`/api/v1/tasks/${t.id}/${action}`, { method: 'POST' });
      return true;
    } catch (e) { toast(e.message, 'error'); return false; }
  };
  async function load() {
    const [m, p, unsaved] = await Promise.all([all('/api/v1/me/tasks'), all('/api/v1/pool/tasks', 200),
      pendingByTask(currentSession().username).catch(() => new Map())]);
    clear(mine);
    for (const t of m) {
      const cell = h('td');
      if (t.state === 'new' || t.state === 'rejected') {
        const b = h('button', { type: 'button', class: 'primary' }, t.state === 'new' ? 'Start' : 'Start rework');
        b.addEventListener('click', async () => { if (await act(t, 'start')) ctx.navigate(`/tasks/${t.id}`); });
        cell.append(b);
      } else if (t.state === 'in_progress') {
        const submit = h('button', { type: 'button' }, 'Submit');
        submit.addEventListener('click', async () => {
          // Work this browser still holds for the task goes to the server first (from the task).
          const waiting = (await pendingByTask(currentSession().username).catch(() => new Map())).get(t.id);
          if (waiting) { toast(`${waiting} ${waiting === 1 ? 'image' : 'images'} of task ${t.id} not saved yet: open the task to send them, then submit`, 'error', 10_000); return; }
          if (await act(t, 'submit')) { toast(`Task ${t.id} submitted`, 'ok'); load(); }
        });
        cell.append(h('a', { class: 'button primary', href: `/tasks/${t.id}`, 'data-link': true }, 'Continue'), ' ', submit);
      } else {
        cell.append(h('a', { href: `/tasks/${t.id}`, 'data-link': true }, 'View'));
      }
      const waiting = unsaved.get(t.id);
      const state = h('td', null, stateBadge(t.state),
        t.reason ? h('div', { class: 'reason' }, `Rejected: ${t.reason}`) : null,
        waiting ? h('div', { class: 'badge st-failed unsaved-here' }, `${waiting} not saved (kept in this browser)`) : null);
      mine.append(h('tr', { dataset: { task: String(t.id), state: t.state } },
        h('td', null, `#${t.id}`), h('td', null, t.set_name || `set ${t.annotation_set}`), h('td', null, t.image_count), state, cell));
    }
    if (!m.length) mine.append(h('tr', null, h('td', { colspan: 5, class: 'muted' }, 'Nothing assigned to you.')));
    clear(pool);
    for (const t of p) {
      const b = h('button', { type: 'button' }, 'Claim');
      b.addEventListener('click', async () => { if (await act(t, 'claim')) { toast(`Task ${t.id} is yours`, 'ok'); load(); } });
      pool.append(h('tr', { dataset: { task: String(t.id) } }, h('td', null, `#${t.id}`), h('td', null, t.set_name || `set ${t.annotation_set}`), h('td', null, t.image_count), h('td', null, b)));
    }
    if (!p.length) pool.append(h('tr', null, h('td', { colspan: 4, class: 'muted' }, 'The pool is empty.')));
  }
  await load();
}
