// Your account: the sessions you are signed in with (browsers and API tokens), where and when
// each began, signing one or all of them out, and changing your password (which signs out every
// other session).

import { api, currentSession, forget } from './api.js';
import { clear, field, fmtTime, h, toast } from './dom.js';

const KINDS = { sign_in: 'Sign-in', api_token: 'API token' };

export async function render(el) {
  const s = currentSession();
  const tbody = h('tbody');
  const everywhere = h('button', { type: 'button', class: 'danger', id: 'sign-out-everywhere' }, 'Sign out everywhere');
  everywhere.addEventListener('click', async () => {
    if (!confirm('Sign out every session, this one included?')) return;
    try {
      await api('/api/v1/me/sessions', { method: 'DELETE' });
      forget();
      toast('Signed out everywhere', 'ok');
    } catch (e) { toast(e.message, 'error'); }
  });

  const current = h('input', { id: 'current-password', type: 'password', required: true, autocomplete: 'current-password' });
  const next = h('input', { id: 'new-password', type: 'password', required: true, minlength: 8, autocomplete: 'new-password' });
  const err = h('p', { class: 'error', role: 'alert' });
  const form = h('form', { class: 'card', 'aria-label': 'Change password' }, h('h2', null, 'Change password'),
    h('div', { class: 'row' }, field('Current password', current), field('New password', next, 'at least 8 characters; your other sessions are signed out'),
      h('button', { type: 'submit', class: 'primary' }, 'Change password')), err);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    err.textContent = '';
    try {
      const r = await api('/api/v1/me/password', { method: 'PUT', json: { current_password: current.value, new_password: next.value } });
      form.reset();
      toast(`Password changed; ${r.ended_sessions} other session${r.ended_sessions === 1 ? '' : 's'} signed out`, 'ok');
      await load();
    } catch (e2) { err.textContent = e2.message; }
  });

  el.append(h('h1', null, 'Your account'),
    h('p', null, `Signed in as ${s.username} (${s.role}).`),
    h('section', { class: 'card', 'aria-labelledby': 'sessions-title' },
      h('div', { class: 'row spread' }, h('h2', { id: 'sessions-title' }, 'Sessions'), everywhere),
      h('table', { id: 'sessions', 'aria-label': 'Sessions' },
        h('thead', null, h('tr', null, ['Kind', 'Client', 'From', 'Opened', 'Last refreshed', 'Expires', ''].map((t) => h('th', null, t)))), tbody)),
    form);

  async function end(session) {
    try {
      await api(`/api/v1/me/sessions/${session.id}`, { method: 'DELETE' });
      toast('Session signed out', 'ok');
      if (session.current) { forget(); return; }
    } catch (e) { toast(e.message, 'error'); }
    await load();
  }

  async function load() {
    const { items } = await api('/api/v1/me/sessions');
    clear(tbody);
    for (const session of items) {
      const out = h('button', { type: 'button' }, session.current ? 'Sign out' : 'Sign out this session');
      out.addEventListener('click', () => end(session));
      tbody.append(h('tr', { dataset: { session: session.id, current: session.current ? 'yes' : 'no' } },
        h('td', null, KINDS[session.kind] || session.kind, session.current ? h('strong', null, ' · this session') : null),
        h('td', null, session.client || 'unknown client'),
        h('td', null, session.address || 'unknown'),
        h('td', null, fmtTime(session.created_ms)),
        h('td', null, fmtTime(session.last_used_ms)),
        h('td', null, fmtTime(session.expires_ms)),
        h('td', null, out)));
    }
  }
  await load();
}
