// The shell: routing (History API; the node answers unknown page paths with index.html),
// navigation by role, the sign-in page and the leave guard of pages with unsaved work.

import { api, atLeast, currentSession, login, logout, onSession } from './api.js';
import { clear, field, h, toast } from './dom.js';

const routes = [
  [/^\/login$/, () => ({ render: renderLogin }), 'anyone'],
  [/^\/datasets$/, () => import('./datasets.js'), 'manager'],
  [/^\/datasets\/(\d+)$/, () => import('./dataset.js'), 'manager'],
  [/^\/sets\/new$/, () => import('./schema.js'), 'manager'],
  [/^\/sets\/(\d+)(?:\/(schema|tasks|dashboard|quality))?$/, () => import('./set.js'), 'manager'],
  [/^\/webhooks$/, () => import('./webhooks.js'), 'manager'],
  [/^\/my-tasks$/, () => import('./mytasks.js'), 'annotator'],
  [/^\/review$/, () => import('./review.js'), 'reviewer'],
  [/^\/quality\/(\d+)$/, () => import('./setquality.js'), 'reviewer'],
  [/^\/tasks\/(\d+)$/, () => import('./workspace.js'), 'annotator'],
  [/^\/admin\/users$/, () => import('./users.js'), 'admin'],
  [/^\/admin\/cluster$/, () => import('./cluster.js'), 'admin'],
  [/^\/account$/, () => import('./account.js'), 'annotator'],
];

const view = document.getElementById('view');
let cleanup = null;
let renderSeq = 0;
/** A page with unsaved work sets this to a function answering whether leaving is fine. */
let leaveGuard = null;
export const setLeaveGuard = (f) => { leaveGuard = f; };

export function navigate(path, { replace = false } = {}) {
  if (path === location.pathname + location.search) return render();
  if (leaveGuard && !leaveGuard()) return;
  history[replace ? 'replaceState' : 'pushState'](null, '', path);
  render();
}

document.addEventListener('click', (e) => {
  const a = e.target.closest('a[data-link]');
  if (!a || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
  e.preventDefault();
  navigate(a.getAttribute('href'));
});
let shown = location.pathname + location.search;
window.addEventListener('popstate', () => {
  if (leaveGuard && !leaveGuard()) { history.pushState(null, '', shown); return; }
  render();
});
window.addEventListener('beforeunload', (e) => {
  if (leaveGuard && !leaveGuard(true)) { e.preventDefault(); e.returnValue = ''; }
});

function home() {
  return atLeast('manager') ? '/datasets' : atLeast('reviewer') ? '/review' : '/my-tasks';
}

function renderNav() {
  const s = currentSession();
  const top = document.getElementById('top');
  top.hidden = !s;
  if (!s) return;
  const links = [];
  if (atLeast('manager')) links.push(['/datasets', 'Datasets'], ['/webhooks', 'Webhooks']);
  links.push(['/my-tasks', 'My tasks']);
  if (atLeast('reviewer')) links.push(['/review', 'Review']);
  if (atLeast('admin')) links.push(['/admin/users', 'Users'], ['/admin/cluster', 'Cluster']);
  const nav = clear(document.getElementById('nav'));
  for (const [href, text] of links) {
    const current = location.pathname.startsWith(href) ? 'page' : null;
    nav.append(h('a', { href, 'data-link': true, 'aria-current': current }, text));
  }
  const who = clear(document.getElementById('who'));
  who.append(h('a', { href: '/account', 'data-link': true, title: 'Your account and sessions', 'aria-current': location.pathname === '/account' ? 'page' : null }, `${s.username} · ${s.role}`));
}

export async function render() {
  const path = location.pathname;
  shown = path + location.search;
  if (cleanup) { try { cleanup(); } catch (e) { console.error(e); } cleanup = null; }
  leaveGuard = null;
  if (!currentSession() && path !== '/login') {
    history.replaceState(null, '', `/login?next=${encodeURIComponent(shown)}`);
    return render();
  }
  if (path === '/' || path === '/index.html') {
    history.replaceState(null, '', home());
    return render();
  }
  renderNav();
  const found = routes.find(([re]) => re.test(path));
  renderSeq++;
  clear(view);
  if (!found) {
    view.append(h('h1', null, 'Not found'), h('p', null, h('a', { href: home(), 'data-link': true }, 'Go home')));
    return;
  }
  const [re, load, role] = found;
  if (role !== 'anyone' && !atLeast(role)) {
    view.append(h('h1', null, 'Not allowed'), h('p', null, `This page needs the ${role} role.`));
    return;
  }
  // Each render draws into its own element: a render that a newer one overtook (a click while
  // the page was loading) finishes into a detached element and is cleaned up, never shown.
  const mine = ++renderSeq;
  const page = h('div', { class: 'page' });
  view.append(page);
  const current = () => mine === renderSeq;
  try {
    const mod = await load();
    const params = path.match(re).slice(1);
    const ctx = { navigate, setLeaveGuard: (f) => { if (current()) leaveGuard = f; }, query: new URLSearchParams(location.search), current };
    const done = (await mod.render(page, params, ctx)) || null;
    if (current()) cleanup = done;
    else if (done) done();
  } catch (e) {
    console.error(e);
    if (current()) page.append(h('p', { class: 'error', role: 'alert' }, `Could not load this page: ${e.message}`));
  }
  if (!current()) return;
  if (!view.contains(document.activeElement) || document.activeElement === document.body) {
    const first = view.querySelector('[autofocus]');
    (first || view).focus({ preventScroll: true });
  }
}

function renderLogin(el, _params, ctx) {
  if (currentSession()) { navigate(ctx.query.get('next') || home(), { replace: true }); return; }
  const user = h('input', { name: 'username', autocomplete: 'username', required: true, autofocus: true });
  const pass = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const err = h('p', { class: 'error', role: 'alert' });
  const button = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const form = h('form', { class: 'card narrow', 'aria-labelledby': 'login-title' },
    h('h1', { id: 'login-title' }, 'Sign in to Tessera'),
    field('Username', user), field('Password', pass), err, button);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    err.textContent = '';
    button.disabled = true;
    try {
      await login(user.value.trim(), pass.value);
      const next = ctx.query.get('next');
      navigate(next && next.startsWith('/') && !next.startsWith('/login') ? next : home(), { replace: true });
    } catch (e2) {
      err.textContent = e2.message;
      button.disabled = false;
      pass.select();
    }
  });
  el.append(form);
}

document.getElementById('logout').addEventListener('click', async () => {
  if (leaveGuard && !leaveGuard()) return;
  leaveGuard = null;
  await logout();
  toast('Signed out');
});

onSession((s) => {
  if (!s && location.pathname !== '/login') render();
  else renderNav();
});

// For scripts and the browser tests: the API client and the session it holds (the tokens are
// in localStorage anyway).
window.tessera = { api, navigate, session: currentSession };
render();
