// The API client: OAuth2 tokens kept in localStorage (so a reload keeps the session), refreshed
// before they expire, JSON in and out, errors as ApiError with the server's code and message.

const KEY = 'tessera.session';

export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

let session = null;
try { session = JSON.parse(localStorage.getItem(KEY) || 'null'); } catch { session = null; }
const listeners = new Set();

function store(next) {
  session = next;
  if (next) localStorage.setItem(KEY, JSON.stringify(next));
  else localStorage.removeItem(KEY);
  for (const f of listeners) f(session);
}

// Another tab signed in, refreshed or signed out.
window.addEventListener('storage', (e) => {
  if (e.key !== KEY) return;
  try { session = JSON.parse(e.newValue || 'null'); } catch { session = null; }
  for (const f of listeners) f(session);
});

export const onSession = (f) => listeners.add(f);
export const currentSession = () => session;

const ROLES = ['annotator', 'reviewer', 'manager', 'admin'];
export const atLeast = (role) => !!session && ROLES.indexOf(session.role) >= ROLES.indexOf(role);

async function tokenRequest(form) {
  const r = await fetch('/oauth/token', { method: 'POST', body: new URLSearchParams(form) });
  const j = await r.json().catch(() => ({}));
  if (!r.ok) throw new ApiError(r.status, j.error || 'token_error', j.error_description || `sign-in failed (${r.status})`, j);
  return j;
}

const fromGrant = (username, j) => ({
  username, role: j.role, session: j.session, access: j.access_token, refresh: j.refresh_token,
  expires: Date.now() + j.expires_in * 1000,
});

export async function login(username, password) {
  store(fromGrant(username, await tokenRequest({ grant_type: 'password', username, password })));
  return session;
}

function readStored() {
  try { return JSON.parse(localStorage.getItem(KEY) || 'null'); } catch { return null; }
}

// The last rotation (the refresh token spent and the session it bought), kept in IndexedDB and
// written before the refresh lock is released. localStorage will not do for this: another
// tab's copy of it is updated asynchronously, so a tab that gets the lock next may still read
// the spent token; a committed IndexedDB transaction is seen by every later one.
function rotations(mode, f) {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open('tessera', 1);
    open.onupgradeneeded = () => open.result.createObjectStore('rotation');
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const db = open.result;
      const tx = db.transaction('rotation', mode);
      const req = f(tx.objectStore('rotation'));
      tx.oncomplete = () => { db.close(); resolve(req.result); };
      tx.onerror = tx.onabort = () => { db.close(); reject(tx.error); };
    };
  });
}
const lastRotation = () => rotations('readonly', (s) => s.get('last')).catch(() => null);
const recordRotation = (value) => rotations('readwrite', (s) => s.put(value, 'last')).catch(() => null);
const forgetRotations = () => rotations('readwrite', (s) => s.delete('last')).catch(() => null);

// Refresh tokens rotate: each one works once, and presenting a used one again makes the server
// end the whole session (it looks stolen). So tabs of one browser refresh one at a time under a
// Web Lock, and a tab that waited adopts the tokens the other tab just got instead of
// presenting the refresh token that tab already used.
async function rotate(used) {
  const last = await lastRotation();
  if (last && last.used === used) { store(last.session); return; }
  const current = readStored();
  if (current?.refresh && current.refresh !== used) { store(current); return; }
  if (!current?.refresh) throw new ApiError(401, 'unauthorized', 'signed out');
  const j = await tokenRequest({ grant_type: 'refresh_token', refresh_token: used });
  const next = { ...fromGrant(current.username, j), role: j.role || current.role };
  await recordRotation({ used, session: next });
  store(next);
}

let refreshing = null;
async function refresh() {
  if (!session?.refresh) throw new ApiError(401, 'unauthorized', 'signed out');
  const used = session.refresh;
  refreshing ??= (navigator.locks
    ? navigator.locks.request('tessera.refresh', () => rotate(used))
    : rotate(used)).finally(() => { refreshing = null; });
  return refreshing;
}

/** Forgets the local session without telling the server (it already ended server-side). */
export const forget = () => { store(null); forgetRotations(); };

export async function logout() {
  const s = session;
  store(null);
  await forgetRotations();
  if (!s) return;
  // RFC 7009: revoke both; failures do not keep anyone signed in locally.
  await Promise.allSettled([s.refresh, s.access].filter(Boolean).map((token) =>
    fetch('/oauth/revoke', { method: 'POST', body: new URLSearchParams({ token }) })));
}

async function authHeader() {
  if (!session) throw new ApiError(401, 'unauthorized', 'signed out');
  if (session.expires - Date.now() < 60_000) {
    // Only the server's refusal ends the session; an unreachable server leaves it (and the
    // work of the page) as it is, to be tried again.
    try { await refresh(); } catch (e) { if (e instanceof ApiError && e.status >= 400 && e.status < 500) store(null); throw e; }
  }
  return `Bearer ${session.access}`;
}

/**
 * Calls the API. `opts.json` is sent as JSON; `opts.body` raw. Returns the parsed body, or with
 * `opts.full` `{status, headers, body}` (4xx/5xx still throw unless listed in `opts.accept`).
 */
/**
 * An object URL (presigned or not) asking for a server-made form of the image: 'thumb' (longest
 * side 256 px) or 'preview' (1280 px), in the original's displayed frame. No URL (none was
 * handed out) stays none.
 */
export const sized = (url, size) => url && `${url}${url.includes('?') ? '&' : '?'}size=${size}`;

export async function api(path, opts = {}) {
  const headers = { ...(opts.headers || {}) };
  let body = opts.body;
  if (opts.json !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(opts.json);
  }
  for (let attempt = 0; ; attempt++) {
    headers.authorization = await authHeader();
    const r = await fetch(path, { method: opts.method || (body ? 'POST' : 'GET'), headers, body, signal: opts.signal });
    if (r.status === 401 && attempt === 0 && session?.refresh) {
      try { await refresh(); continue; } catch { store(null); }
    }
    const text = await r.text();
    let parsed = null;
    try { parsed = text ? JSON.parse(text) : null; } catch { parsed = text; }
    if (!r.ok && !(opts.accept || []).includes(r.status)) {
      const err = parsed && parsed.error;
      if (r.status === 401) store(null);
      throw new ApiError(r.status, err?.code || `http_${r.status}`, err?.message || `${r.status} ${r.statusText}`, parsed);
    }
    return opts.full ? { status: r.status, headers: r.headers, body: parsed } : parsed;
  }
}

/** Every item of a paged list (`?limit=&cursor=` → `{items, next_cursor}`), up to `max`. */
export async function all(path, max = 10000) {
  const out = [];
  let cursor = null;
  do {
    const sep = path.includes('?') ? '&' : '?';
    const page = await api(`${path}${sep}limit=1000${cursor != null ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    out.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor != null && out.length < max);
  return out;
}

/**
 * Uploads a raw body with XMLHttpRequest, for its upload progress events.
 * `onProgress(loaded, total)`; resolves with the parsed JSON reply.
 */
export async function upload(path, blob, onProgress, signal) {
  const auth = await authHeader();
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', path);
    xhr.setRequestHeader('authorization', auth);
    xhr.setRequestHeader('content-type', blob.type || 'application/octet-stream');
    xhr.upload.onprogress = (e) => onProgress?.(e.loaded, e.lengthComputable ? e.total : blob.size);
    xhr.onload = () => {
      let j = null;
      try { j = JSON.parse(xhr.responseText); } catch { j = null; }
      if (xhr.status >= 200 && xhr.status < 300) resolve(j);
      else reject(new ApiError(xhr.status, j?.error?.code || `http_${xhr.status}`, j?.error?.message || `upload failed (${xhr.status})`, j));
    };
    xhr.onerror = () => reject(new ApiError(0, 'network', 'network error during upload'));
    xhr.onabort = () => reject(new ApiError(0, 'aborted', 'upload cancelled'));
    signal?.addEventListener('abort', () => xhr.abort());
    xhr.send(blob);
  });
}

/** Polls a job until it ends (or `signal` aborts), calling `onUpdate(job)` on each read. */
export async function followJob(id, onUpdate, signal) {
  let delay = 200;
  for (;;) {
    const job = await api(`/api/v1/jobs/${id}`, { signal });
    onUpdate?.(job);
    if (job.state !== 'running') return job;
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(1000, delay * 1.5);
    if (signal?.aborted) return job;
  }
}
