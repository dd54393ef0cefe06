// Thousands of shapes on one image (issue 13): 5000 shapes (4000 polygons of 20–50 vertices and
// 1000 boxes) saved through the API, then the workspace opened and edited with the mouse and
// keyboard. Prints how long opening and each edit took (performance marks, from the input
// event to the frame after it), and the size and method of the last save (PATCH: only what
// changed); asserts only that the edits are right.
//
// Env (besides harness.mjs's): TESSERA_TASK, a task assigned to `bencher` whose images are
// 640×480, with the label car (rectangle, polygon).

import assert from 'node:assert/strict';
import {
  apiGet, apiSend, at, BASE, eventually, finish, log, newUserPage, pw, signIn, token, waitSaved, workspace,
} from './harness.mjs';

const TASK = Number(process.env.TESSERA_TASK);
assert.ok(TASK, 'TESSERA_TASK is required');
const USER = 'bencher';
const tok = await token(USER, pw(USER));
const task = await apiGet(tok, `/api/v1/tasks/${TASK}`);
const sha = task.images[0].sha256;
await apiSend(tok, 'POST', `/api/v1/tasks/${TASK}/start`);

// Deterministic shapes: small polygons and boxes all over the image; shape 0 is a big box
// in the top-left corner, drawn first (the others are on top of it elsewhere).
let seed = 42;
const rnd = () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648; };
const r2 = (v) => Math.round(v * 100) / 100;
const shapes = [{ label: 'car', kind: 'rectangle', points: [[5, 5], [60, 60]] }];
for (let i = 1; i < 5000; i++) {
  const cx = 80 + rnd() * 540;
  const cy = 80 + rnd() * 380;
  if (i % 5 === 0) {
    shapes.push({ label: 'car', kind: 'rectangle', points: [[r2(cx - 8), r2(cy - 6)], [r2(cx + 8), r2(cy + 6)]] });
  } else {
    const n = 20 + Math.floor(rnd() * 31);
    const rad = 4 + rnd() * 10;
    shapes.push({ label: 'car', kind: 'polygon', points: Array.from({ length: n }, (_, k) => [r2(Math.min(640, cx + rad * Math.cos((2 * Math.PI * k) / n))), r2(Math.min(480, cy + rad * Math.sin((2 * Math.PI * k) / n)))]) });
  }
}
const put = await apiSend(tok, 'PUT', `/api/v1/tasks/${TASK}/images/${sha}/annotations`, { shapes }, { 'if-match': '"0"' });
log(`5000 shapes saved (${JSON.stringify({ shapes }).length} bytes of JSON), version ${put.version}`);

const page = await newUserPage(BASE, { width: 1440, height: 900 });
await signIn(page, USER, pw(USER));
let body = 0;
let method = '';
page.on('request', (r) => {
  if (['PUT', 'PATCH'].includes(r.method()) && r.url().includes('/annotations')) { body = r.postDataBuffer()?.length ?? 0; method = r.method(); }
});
const opened = Date.now();
await page.goto(`${BASE}/tasks/${TASK}`);
await workspace(page);
await eventually('5000 shapes', () => page.evaluate(() => window.tessera.editor.shapes.length === 5000));
await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
const openMs = Date.now() - opened;

/**
 * Milliseconds from the next input event to the second frame after it, and from the last input
 * event (the edit's last pointerup or keydown) to that frame: a drag's mouse events are each
 * dispatched with a frame, so its whole figure holds a frame per event however little each
 * costs, and the second figure is what the edit's end costs.
 */
const afterLast = {};
async function timed(what, act) {
  await page.evaluate(() => {
    window.__t0 = null;
    window.__last = null;
    const start = () => { window.__t0 ??= performance.now(); };
    for (const type of ['pointerdown', 'keydown']) document.addEventListener(type, start, { capture: true, once: true });
    // Listened to from the first measure on; Ctrl of Ctrl+Z is not the edit's input, its Z is.
    if (!window.__lastSeen) {
      window.__lastSeen = true;
      const last = (e) => { if (!['Control', 'Shift', 'Alt', 'Meta'].includes(e.key)) window.__last = performance.now(); };
      for (const type of ['pointerup', 'keydown']) document.addEventListener(type, last, { capture: true });
    }
  });
  await act();
  const [ms, tail] = await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => {
    const now = performance.now();
    window.__last ??= now;
    r([now - window.__t0, now - window.__last]);
  }))));
  log(`${what}: ${ms.toFixed(1)} ms (${tail.toFixed(1)} ms after its last input event)`);
  afterLast[what] = Math.round(tail * 10) / 10;
  return ms;
}
// Everything undo must put back: ids, order and every saved field of every shape.
const state = () => page.evaluate(() => JSON.stringify(window.tessera.editor.shapes
  .map((s) => [s._id, s.label, s.kind, s.points, s.angle, s.visibility, s.attributes, s.occluded])));
const asOpened = await state();
const results = { open: openMs };
await page.keyboard.press('v');
// The floor under every figure: a key that changes nothing, to the second frame after it.
results.frame = await timed('a key that does nothing', () => page.keyboard.press('x'));
const [bx, by] = await at(page, [30, 30]);
results.select = await timed('select', () => page.mouse.click(bx, by));
assert.equal(await page.evaluate(() => window.tessera.editor.selectedShape()?.kind), 'rectangle');
const scale = await page.evaluate(() => window.tessera.editor.scale);
results.move = await timed('move', async () => {
  await page.mouse.move(bx, by);
  await page.mouse.down();
  await page.mouse.move(bx + 10 * scale, by + 10 * scale, { steps: 2 });
  await page.mouse.up();
});
const [vx, vy] = await at(page, [60, 60]);
results.vertex = await timed('vertex drag', async () => {
  await page.mouse.move(vx + 10 * scale, vy + 10 * scale);
  await page.mouse.down();
  await page.mouse.move(vx + 30 * scale, vy + 30 * scale, { steps: 2 });
  await page.mouse.up();
});
const dragged = await state();
results.undo = await timed('undo', () => page.keyboard.press('Control+z'));
const moved = await state();
// Undo and redo restore exactly, the z-order too: back to the image as opened, forward to the
// vertex drag, a deletion undone; then back to the move, which is saved.
const undoRedo = async (key, want, what) => {
  await page.keyboard.press(key);
  assert.ok((await state()) === want, what);
};
await undoRedo('Control+z', asOpened, 'undone to the image as opened');
await undoRedo('Control+Shift+z', moved, 'the move redone');
await undoRedo('Control+Shift+z', dragged, 'the vertex drag redone');
await undoRedo('Control+z', moved, 'the vertex drag undone again');
await page.keyboard.press('Delete');
assert.equal(await page.evaluate(() => window.tessera.editor.shapes.length), 4999, 'the box deleted');
await undoRedo('Control+z', moved, 'the deletion undone, the box first again');
await waitSaved(page);
const saved = (await apiGet(tok, `/api/v1/tasks/${TASK}/images/${sha}/annotations`)).shapes;
assert.equal(saved.length, 5000);
assert.deepEqual(saved[0].points.map((p) => p.map(Math.round)), [[15, 15], [70, 70]], 'moved, resized, the resize undone');
results.saveBytes = body;
results.saveMethod = method;
// The save's diff, on random edits of small lists of few distinct shapes (duplicates, moves,
// insertions, removals): its splices applied to the base give the current list.
const diffFailure = await page.evaluate(async () => {
  const { splices } = await import('/js/patch.js');
  let seed = 7;
  const rnd = (n) => { seed = (seed * 1103515245 + 12345) % 2147483648; return Math.floor((seed / 2147483648) * n); };
  for (let t = 0; t < 5000; t++) {
    const base = Array.from({ length: rnd(12) }, () => `{"n":${rnd(5)}}`);
    const now = [...base];
    for (let k = rnd(4); k > 0; k--) {
      const r = rnd(3);
      if (r === 0 && now.length) now.splice(rnd(now.length), 1);
      else if (r === 1) now.splice(rnd(now.length + 1), 0, `{"n":${rnd(7)}}`);
      else if (now.length) now.splice(rnd(now.length), 0, ...now.splice(rnd(now.length), 1));
    }
    const out = [];
    let at = 0;
    for (const [i, remove, texts] of splices(base, now)) {
      if (i < at || i + remove > base.length) return `splices out of order for ${base} → ${now}`;
      out.push(...base.slice(at, i), ...texts);
      at = i + remove;
    }
    out.push(...base.slice(at));
    if (out.join() !== now.join()) return `${base} → ${now} gave ${out}`;
  }
  return null;
});
assert.equal(diffFailure, null, 'the save diff rebuilds the current shapes');
const heap = await page.evaluate(() => performance.memory?.usedJSHeapSize ?? 0);
log(`5000 shapes: ${JSON.stringify({ ...results, heapMB: Math.round(heap / 1e6) })}; after the last input event: ${JSON.stringify(afterLast)}`);
await finish('bench-shapes');
