// Edits the server has not acknowledged yet, kept in IndexedDB so that a failed save, a node
// that went away, a reload or a closed tab never loses work: one record per (user, task,
// image) holding the shapes and the version they were made from (the save's If-Match).
// The workspace writes a record on every change and deletes it once a save of exactly those
// shapes succeeded; on opening a task it takes back what is still here and sends it again.
//
// One connection per page, so transactions start in the order they were asked for: a record
// written after a save began is never deleted by that save's completion.

const DB = 'tessera-unsaved';
const STORE = 'edits';

let opened = null;
function db() {
  opened ??= new Promise((resolve, reject) => {
    const open = indexedDB.open(DB, 1);
    open.onupgradeneeded = () => open.result.createObjectStore(STORE, { keyPath: 'key' });
    open.onsuccess = () => resolve(open.result);
    open.onerror = () => { opened = null; reject(open.error); };
  });
  return opened;
}

async function run(mode, f) {
  const tx = (await db()).transaction(STORE, mode);
  const req = f(tx.objectStore(STORE));
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve(req.result);
    tx.onerror = tx.onabort = () => reject(tx.error);
  });
}

const keyOf = (user, task, sha) => `${user}|${task}|${sha}`;

/** Records (or replaces) the unsaved shapes of one image: `{user, task, sha, base, shapes}`. */
export const keep = (e) => run('readwrite', (s) => s.put({ ...e, key: keyOf(e.user, e.task, e.sha), at: Date.now() }));

/** Forgets an image's unsaved shapes (saved, or discarded by the user). */
export const drop = (user, task, sha) => run('readwrite', (s) => s.delete(keyOf(user, task, sha)));

/** The unsaved images of one task of `user`. */
export const pending = (user, task) => run('readonly', (s) => s.getAll(IDBKeyRange.bound(keyOf(user, task, ''), keyOf(user, task, '\uffff'))));

/** How many unsaved images each task of `user` has here: `Map(task id → count)`. */
export async function pendingByTask(user) {
  const all = await run('readonly', (s) => s.getAll(IDBKeyRange.bound(`${user}|`, `${user}|\uffff`)));
  const counts = new Map();
  for (const e of all) counts.set(Number(e.task), (counts.get(Number(e.task)) || 0) + 1);
  return counts;
}
