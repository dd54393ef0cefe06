// Admin: users and roles.

import { all, api } from './api.js';
import { clear, field, fmtTime, h, toast } from './dom.js';

const ROLES = ['annotator', 'reviewer', 'manager', 'admin'];

export async function render(el) {
  const username = h('input', { id: 'new-username', required: true, autocomplete: 'off', pattern: '[a-z0-9._\\-]{1,64}' });
  const password = h('input', { id: 'new-password', type: 'password', required: true, minlength: 8, autocomplete: 'new-password' });
  const role = h('select', { id: 'new-role' }, ROLES.map((r) => h('option', { value: r }, r)));
  const err = h('p', { class: 'error', role: 'alert' });
  const form = h('form', { class: 'card', 'aria-label': 'New user' }, h('h2', null, 'New user'),
    h('div', { class: 'row' }, field('Username', username, 'a-z, 0-9, . _ -'), field('Password', password, 'at least 8 characters'), field('Role', role),
      h('button', { type: 'submit', class: 'primary' }, 'Create user')), err);
  const tbody = h('tbody');
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    err.textContent = '';
    try {
      await api('/api/v1/users', { json: { username: username.value.trim(), password: password.value, role: role.value } });
      toast(`User ${username.value.trim()} created`, 'ok');
      form.reset();
      await load();
      username.focus();
    } catch (e2) { err.textContent = e2.message; }
  });
  el.append(h('h1', null, 'Users'), form,
    h('table', { id: 'users', 'aria-label': 'Users' },
      h('thead', null, h('tr', null, ['User', 'Role', 'Status', 'Created', ''].map((t) => h('th', null, t)))), tbody));
  async function patch(u, body, what) {
    try { await api(`/api/v1/users/${u.username}`, { method: 'PATCH', json: body }); toast(`${u.username}: ${what}`, 'ok'); } catch (e) { toast(e.message, 'error'); }
    load();
  }
  async function load() {
    const users = await all('/api/v1/users');
    clear(tbody);
    for (const u of users) {
      const sel = h('select', { 'aria-label': `Role of ${u.username}` }, ROLES.map((r) => h('option', { value: r, selected: r === u.role }, r)));
      sel.addEventListener('change', () => patch(u, { role: sel.value }, `role ${sel.value}`));
      const toggle = h('button', { type: 'button' }, u.disabled ? 'Enable' : 'Disable');
      toggle.addEventListener('click', () => patch(u, { disabled: !u.disabled }, u.disabled ? 'enabled' : 'disabled'));
      const pw = h('button', { type: 'button' }, 'Set password…');
      pw.addEventListener('click', () => {
        const p = prompt(`New password for ${u.username} (at least 8 characters)`);
        if (p) patch(u, { password: p }, 'password changed');
      });
      const out = h('button', { type: 'button' }, 'Sign out everywhere');
      out.addEventListener('click', async () => {
        if (!confirm(`Sign ${u.username} out of every session and API token?`)) return;
        try {
          const r = await api(`/api/v1/users/${u.username}/sessions`, { method: 'DELETE' });
          toast(`${u.username}: ${r.ended} session${r.ended === 1 ? '' : 's'} signed out`, 'ok');
        } catch (e) { toast(e.message, 'error'); }
      });
      const del = h('button', { type: 'button', class: 'danger' }, 'Delete');
      del.addEventListener('click', async () => {
        if (!confirm(`Delete ${u.username}?`)) return;
        try { await api(`/api/v1/users/${u.username}`, { method: 'DELETE' }); } catch (e) { toast(e.message, 'error'); }
        load();
      });
      tbody.append(h('tr', { dataset: { user: u.username } }, h('td', null, u.username), h('td', null, sel),
        h('td', null, u.disabled ? 'disabled' : 'active'), h('td', null, fmtTime(u.created_ms)), h('td', null, toggle, ' ', pw, ' ', out, ' ', del)));
    }
  }
  await load();
}
