// Thousands of shapes on one image (issue 13): 5000 shapes (4000 polygons of 20–50 vertices and
// 1000 boxes) saved through the API, then the workspace opened and edited with the mouse and
// keyboard. Prints how long opening and each edit took (performance marks, from the input
// event to the frame after it), and the size of a save; asserts only that the edits are right.
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
page.on('request', (r) => { if (r.method() === 'PUT' && r.url().includes('/annotations')) body = r.postDataBuffer()?.length ?? 0; });
const opened = Date.now();
await page.goto(`${BASE}/tasks/${TASK}`);
await workspace(page);
await eventually('5000 shapes', () => page.evaluate(() => window.tessera.editor.shapes.length === 5000));
await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
const openMs = Date.now() - opened;

/** Milliseconds from the next input event to the second frame after it. */
async function timed(what, act) {
  await page.evaluate(() => {
    window.__t0 = null;
    const start = () => { window.__t0 ??= performance.now(); };
    for (const type of ['pointerdown', 'keydown']) document.addEventListener(type, start, { capture: true, once: true });
  });
  await act();
  const ms = await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => r(performance.now() - window.__t0)))));
  log(`${what}: ${ms.toFixed(1)} ms`);
  return ms;
}
const results = { open: openMs };
await page.keyboard.press('v');
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
results.undo = await timed('undo', () => page.keyboard.press('Control+z'));
await waitSaved(page);
const saved = (await apiGet(tok, `/api/v1/tasks/${TASK}/images/${sha}/annotations`)).shapes;
assert.equal(saved.length, 5000);
assert.deepEqual(saved[0].points.map((p) => p.map(Math.round)), [[15, 15], [70, 70]], 'moved, resized, the resize undone');
results.saveBytes = body;
const heap = await page.evaluate(() => performance.memory?.usedJSHeapSize ?? 0);
log(`5000 shapes: ${JSON.stringify({ ...results, heapMB: Math.round(heap / 1e6) })}`);
await finish('bench-shapes');
