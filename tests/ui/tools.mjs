// The editing tools of issue 13, with real mouse and keyboard events and pixel checks: tools no
// label allows are greyed out; brightness changes the canvas's pixels; a double click adds a
// vertex on an edge and removes one; copy and paste onto the next image; z-order; lock; the
// occluded flag (Q and the panel button; drawn dashed; saved and shown after a reload); the
// object filter; a reviewer's comment marked in the strip with a jump to it; submitting with an
// image left empty asks first.
//
// Env (besides harness.mjs's): TESSERA_TASK, a task of 3 images assigned to `tooler` with the
// labels car (rectangle, polygon) and sign (tag); `mgr` is a manager.

import assert from 'node:assert/strict';
import {
  a11y, apiGet, apiSend, at, clickAt, dragBetween, eventually, finish, log, nearPoints, objectCount, pw,
  screenshot, startedWorkspace, token, view, waitSaved, workspace,
} from './harness.mjs';

const TASK = Number(process.env.TESSERA_TASK);
assert.ok(TASK, 'TESSERA_TASK is required');
const USER = 'tooler';
const tok = await token(USER, pw(USER));
const shapesOf = async (sha) => (await apiGet(tok, `/api/v1/tasks/${TASK}/images/${sha}/annotations`)).shapes;

const a = await startedWorkspace(USER, TASK);

log('tools no label allows are greyed out');
for (const tool of ['rotated_rectangle', 'polyline', 'points']) assert.ok(await a.locator(`button[data-tool="${tool}"]`).isDisabled(), `${tool} is disabled`);
for (const tool of ['select', 'rectangle', 'polygon']) assert.ok(await a.locator(`button[data-tool="${tool}"]`).isEnabled(), `${tool} is enabled`);

log('brightness changes the pixels drawn');
const pixel = () => a.evaluate(() => {
  const c = document.getElementById('canvas');
  const d = c.getContext('2d').getImageData(Math.round(c.width / 2), Math.round(c.height / 2), 8, 8).data;
  let sum = 0;
  for (let i = 0; i < d.length; i += 4) sum += d[i] + d[i + 1] + d[i + 2];
  return sum;
});
const dark = await pixel();
await a.locator('summary', { hasText: 'View' }).click();
await a.locator('#brightness').fill('200');
await eventually('a brighter canvas', async () => (await pixel()) > dark * 1.3);
await a.locator('#brightness').fill('100');
await a.locator('#canvas').focus();

log('a polygon, then a vertex added on an edge and one removed with double clicks');
const POLY = [[100, 100], [300, 100], [300, 300], [100, 300]];
await a.keyboard.press('p');
for (const p of POLY) await clickAt(a, p);
await a.keyboard.press('Enter');
await eventually('the polygon', async () => (await objectCount(a)) === 1);
await a.keyboard.press('v');
await clickAt(a, [200, 200]);
const [ex, ey] = await at(a, [200, 100]);
await a.mouse.dblclick(ex, ey);
await waitSaved(a);
const first = (await view(a)).sha;
let saved = (await shapesOf(first))[0].points;
nearPoints(saved, [POLY[0], [200, 100], ...POLY.slice(1)], 'a vertex added on the top edge');
const [vx, vy] = await at(a, POLY[2]);
await a.mouse.dblclick(vx, vy);
await eventually('the vertex removed', async () => (await a.evaluate(() => window.tessera.editor.selectedShape()?.points.length)) === 4);
await waitSaved(a);
saved = (await shapesOf(first))[0].points;
nearPoints(saved, [POLY[0], [200, 100], POLY[1], POLY[3]], 'a vertex removed');

log('locked: neither moved nor deleted');
await a.getByRole('button', { name: 'Lock car 1' }).click();
await dragBetween(a, [150, 200], [250, 250]);
await a.keyboard.press('Delete');
assert.equal(await objectCount(a), 1, 'a locked shape is not deleted');
nearPoints(await a.evaluate(() => window.tessera.editor.selectedShape().points), [POLY[0], [200, 100], POLY[1], POLY[3]], 'a locked shape is not moved');
log('undo and redo of the vertex removal keep the lock (a view, not an edit)');
const vertices = () => a.evaluate(() => window.tessera.editor.selectedShape()?.points.length);
await a.keyboard.press('Control+z');
await eventually('the vertex back', async () => (await vertices()) === 5);
await a.getByRole('button', { name: 'Lock car 1', pressed: true }).waitFor();
await a.keyboard.press('Control+Shift+z');
await eventually('the vertex removed again', async () => (await vertices()) === 4);
await a.getByRole('button', { name: 'Lock car 1', pressed: true }).waitFor();
await a.getByRole('button', { name: 'Lock car 1' }).click();

log('copy, next image, paste');
await a.keyboard.press('Control+c');
await a.keyboard.press('d');
await a.locator('#canvas[data-n="1"]').waitFor();
await a.keyboard.press('Control+v');
await eventually('the pasted polygon', async () => (await objectCount(a)) === 1);
log('z-order: a box over it, sent to the back');
await a.keyboard.press('r');
await dragBetween(a, [150, 150], [400, 400]);
await eventually('the box', async () => (await objectCount(a)) === 2);
await a.getByRole('button', { name: 'Send to back' }).click();
await waitSaved(a);
const second = (await view(a)).sha;
const onSecond = await shapesOf(second);
assert.deepEqual(onSecond.map((s) => s.kind), ['rectangle', 'polygon'], 'the box was sent to the back');
nearPoints(onSecond[1].points, [POLY[0], [200, 100], POLY[1], POLY[3]], 'the pasted polygon');
// A click where both overlap selects the one in front: the polygon.
await a.keyboard.press('v');
await clickAt(a, [200, 200]);
assert.equal(await a.evaluate(() => window.tessera.editor.selectedShape()?.kind), 'polygon');

log('occluded: Q on the polygon, the panel button on the box; dashed; saved; shown after a reload');
// The canvas's pixels along the polygon's left edge (outside the box).
const edge = () => a.evaluate(() => {
  const e = window.tessera.editor;
  const g = document.getElementById('canvas').getContext('2d');
  const dpr = window.devicePixelRatio || 1;
  const out = [];
  for (let y = 120; y <= 280; y++) {
    const [sx, sy] = e.toScreen([100, y]);
    out.push([...g.getImageData(Math.round(sx * dpr), Math.round(sy * dpr), 1, 1).data.slice(0, 3)]);
  }
  return out;
});
const solid = await edge();
await a.keyboard.press('q');
await a.locator('#shape-occluded[aria-pressed="true"]').waitFor();
await eventually('a dashed outline', async () => {
  const now = await edge();
  const gaps = now.filter((p, i) => p.reduce((n, v, k) => n + Math.abs(v - solid[i][k]), 0) > 60).length;
  return gaps > now.length / 5;
});
await clickAt(a, [380, 380]);
assert.equal(await a.evaluate(() => window.tessera.editor.selectedShape()?.kind), 'rectangle');
await a.locator('#shape-occluded[aria-pressed="false"]').click();
await a.locator('#shape-occluded[aria-pressed="true"]').waitFor();
await waitSaved(a);
assert.deepEqual((await shapesOf(second)).map((s) => s.occluded), [true, true], 'both saved occluded');
await a.reload();
await workspace(a);
await a.locator('#canvas[data-n="1"]').waitFor();
await eventually('both listed as occluded', async () => (await a.locator('#objects li[data-occluded="true"]').count()) === 2);
await clickAt(a, [380, 380]);
await a.locator('#shape-occluded[aria-pressed="true"]').waitFor();
assert.deepEqual((await shapesOf(second)).map((s) => s.occluded), [true, true], 'still occluded after the reload');

log('the object list filtered by label');
await a.locator('#object-filter').fill('sign');
await a.locator('#objects li', { hasText: 'No sign shapes.' }).waitFor();
await a.locator('#object-filter').fill('car');
assert.equal(await objectCount(a), 2);
await a.locator('#object-filter').fill('');
await a.locator('#canvas').focus();

log('a comment on image 1 is marked in the strip, with a jump to it');
const mgrTok = await token('mgr', pw('mgr'));
await apiSend(mgrTok, 'POST', `/api/v1/tasks/${TASK}/comments`, { sha256: first, x: 120, y: 120, text: 'check this corner' });
await a.reload();
await workspace(a);
await a.locator('#strip button[data-n="0"] .comment-mark', { hasText: '1' }).waitFor();
await a.locator('#canvas[data-n="1"]').waitFor();
await a.locator('#next-comment', { hasText: 'Go to image 1' }).click();
await a.locator('#canvas[data-n="0"]').waitFor();
await a.locator('#comments li[data-comment]', { hasText: 'check this corner' }).waitFor();
await screenshot(a, 'tools');
await a11y(a, 'workspace with tools');

log('submitting with an empty image asks first');
await a.locator('#submit').click();
await a.locator('#unannotated', { hasText: '1 image has no shapes (3)' }).waitFor();
await a.getByRole('button', { name: 'Go to image 3' }).click();
await a.locator('#canvas[data-n="2"]').waitFor();
assert.match(a.url(), new RegExp(`/tasks/${TASK}`));
assert.equal((await apiGet(tok, `/api/v1/tasks/${TASK}`)).state, 'in_progress', 'the task is not submitted');

await finish('tools');
