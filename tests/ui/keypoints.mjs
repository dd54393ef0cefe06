// Keypoint visibility (issues 12 and 13) with real mouse and keyboard events: a set placed with
// one keypoint occluded (O) and one skipped (N, not in the image); afterwards one toggled (click
// it, O) and one through the Keypoints panel; a skipped one placed later from the panel and
// undone; copy and paste keep the flags; a set with none labelled is refused. After a reload the
// API has exactly that `visibility`, the panel shows it, and the canvas draws the occluded
// keypoint as a hollow ring (its centre shows the image) and the skipped one, and its skeleton
// edge, not at all. The canvas does not move while the set is placed.
//
// Env (besides harness.mjs's): TESSERA_TASK, a task of 1 image assigned to `poser` with the
// label person (points; keypoints head, left hand, right hand, left foot; skeleton from the
// head to each other one; colour #00ff00).

import assert from 'node:assert/strict';
import {
  a11y, apiGet, clickAt, eventually, finish, log, nearPoints, objectCount, pw, screenshot, startedWorkspace,
  token, view, workspace,
} from './harness.mjs';

const TASK = Number(process.env.TESSERA_TASK);
assert.ok(TASK, 'TESSERA_TASK is required');
const USER = 'poser';
const tok = await token(USER, pw(USER));
const HEAD = [320, 120];
const LEFT_HAND = [220, 240];
const RIGHT_HAND = [420, 240];
const LEFT_FOOT = [340, 400];

const a = await startedWorkspace(USER, TASK);
const sha = (await view(a)).sha;
const savedSet = async () => (await apiGet(tok, `/api/v1/tasks/${TASK}/images/${sha}/annotations`)).shapes[0];
/** Waits until the server has the set with exactly `visibility` (absent: `undefined`). */
const savedWith = (visibility) => eventually(`the set saved with visibility ${JSON.stringify(visibility)}`, async () => {
  const set = await savedSet();
  assert.deepEqual(set?.visibility, visibility);
  return set;
});
const selected = () => a.evaluate(() => {
  const s = window.tessera.editor.selectedShape();
  return s && { points: s.points, visibility: s.visibility };
});
const canvasBox = () => a.locator('#canvas').boundingBox();
const panelRow = (i) => a.locator(`#keypoints li[data-keypoint="${i}"]`);

log('placing a set: head, left hand occluded (O), right hand not in the image (N), left foot');
await a.locator('#canvas').focus();
const still = await canvasBox();
await a.keyboard.press('k');
await clickAt(a, HEAD);
await a.locator('#keypoints li.chosen[data-keypoint="1"]').waitFor();
await a.keyboard.press('o');
await a.locator('#occlude-next[aria-pressed="true"]').waitFor();
await a.locator('#draft-hint', { hasText: 'click left hand as occluded (2/4)' }).waitFor();
await clickAt(a, LEFT_HAND);
await a.locator('#keypoints li.chosen[data-keypoint="2"]').waitFor();
assert.equal(await panelRow(1).locator('.kp-state').textContent(), 'occluded');
await a.keyboard.press('n');
await a.locator('#keypoints li.chosen[data-keypoint="3"]').waitFor();
assert.equal(await panelRow(2).locator('.kp-state').textContent(), 'not labelled');
assert.deepEqual(await canvasBox(), still, 'the canvas moved while the set was placed');
await clickAt(a, LEFT_FOOT);
await eventually('the set', async () => (await objectCount(a)) === 1);
let set = await savedWith([2, 1, 0, 2]);
nearPoints(set.points, [HEAD, LEFT_HAND, [0, 0], LEFT_FOOT], 'the placed set');

log('afterwards: left foot clicked and toggled with O, left hand made visible in the panel');
await a.keyboard.press('v');
await clickAt(a, LEFT_FOOT);
await panelRow(3).locator('button.name[aria-pressed="true"]').waitFor();
await a.keyboard.press('o');
await eventually('left foot occluded', async () => (await panelRow(3).locator('select').inputValue()) === '1');
await a.getByLabel('left hand visibility').selectOption('2');
await eventually('left hand visible', async () => (await selected()).visibility?.join() === '2,2,0,1');
await a11y(a, 'workspace with the keypoints panel');
await screenshot(a, 'keypoints-panel');

log('the skipped right hand placed later from the panel, then undone');
await panelRow(2).locator('button.name').click();
await a.locator('#place-keypoint').waitFor();
await clickAt(a, RIGHT_HAND);
await eventually('right hand placed', async () => {
  const s = await selected();
  nearPoints([s.points[2]], [RIGHT_HAND], 'right hand');
  return s.visibility?.join() === '2,2,2,1';
});
await a.keyboard.press('Control+z');
await eventually('the placing undone', async () => {
  const s = await selected();
  return s.visibility?.join() === '2,2,0,1' && s.points[2].join() === '0,0';
});

log('copy and paste keep the flags');
await a.keyboard.press('Control+c');
await a.keyboard.press('Control+v');
await eventually('the pasted set', async () => (await objectCount(a)) === 2);
assert.deepEqual((await selected()).visibility, [2, 2, 0, 1], 'the pasted set keeps its visibility');
await a.keyboard.press('Delete');
await eventually('the pasted set deleted', async () => (await objectCount(a)) === 1);
set = await savedWith([2, 2, 0, 1]);

log('a set with no keypoint labelled is refused: the last skip is undone, nothing is added');
await a.keyboard.press('k');
for (let i = 0; i < 4; i++) await a.keyboard.press('n');
await a.locator('.toast', { hasText: 'At least one keypoint must be labelled' }).waitFor();
await a.locator('#keypoints li.chosen[data-keypoint="3"]').waitFor();
await a.keyboard.press('Escape');
await a.keyboard.press('v');
assert.equal(await objectCount(a), 1, 'no set without a labelled keypoint');

log('the keyboard help names the keys');
await a.keyboard.press('?');
await a.locator('.help-table td', { hasText: 'not in the image' }).waitFor();
await a.getByRole('button', { name: 'Close' }).click();

log('after a reload: the API, the panel and the canvas');
await a.reload();
await workspace(a);
set = await savedWith([2, 2, 0, 1]);
nearPoints(set.points, [HEAD, LEFT_HAND, [0, 0], LEFT_FOOT], 'the saved set');
await a.locator('#canvas').focus();
await clickAt(a, HEAD);
for (const [i, v] of [2, 2, 0, 1].entries()) {
  assert.equal(await panelRow(i).locator('select').inputValue(), String(v), `keypoint ${i} in the panel`);
}
await a.keyboard.press('Escape');
await a.locator('#keypoints').waitFor({ state: 'detached' });

// The canvas's pixels at image points, read in the page: whether each is the label's green
// (#00ff00; the noise image has few such pixels).
const greenAt = (points) => a.evaluate((pts) => {
  const c = document.getElementById('canvas');
  const dpr = window.devicePixelRatio || 1;
  const ctx = c.getContext('2d');
  return pts.map(([x, y]) => {
    const cx = Math.round((Number(c.dataset.tx) + x * Number(c.dataset.scale)) * dpr);
    const cy = Math.round((Number(c.dataset.ty) + y * Number(c.dataset.scale)) * dpr);
    const [r, g, b] = ctx.getImageData(cx, cy, 1, 1).data;
    return r < 90 && g > 170 && b < 90;
  });
}, points);
const share = (flags) => flags.filter(Boolean).length / flags.length;
const scale = (await view(a)).scale;
/** The share of green pixels in the square within `r` screen px of image point `p`. */
const greenNear = async ([x, y], r) => {
  const pts = [];
  for (let dy = -r; dy <= r; dy++) for (let dx = -r; dx <= r; dx++) pts.push([x + dx / scale, y + dy / scale]);
  return share(await greenAt(pts));
};
/** The share of green pixels on the middle 60% of the segment between image points `p` and `q`. */
const greenAlong = async ([px, py], [qx, qy]) => {
  const pts = Array.from({ length: 31 }, (_, i) => 0.2 + (0.6 * i) / 30).map((t) => [px + (qx - px) * t, py + (qy - py) * t]);
  return share(await greenAt(pts));
};
await eventually('the canvas drawn as saved', async () => {
  const seen = {
    headCentre: await greenNear(HEAD, 1),
    footCentre: await greenNear(LEFT_FOOT, 1),
    footRing: await greenNear(LEFT_FOOT, 6),
    placeholder: await greenNear([0, 0], 6),
    rightHandPlacedOnce: await greenNear(RIGHT_HAND, 6),
    headToRightHand: await greenAlong(HEAD, [0, 0]),
    headToLeftHand: await greenAlong(HEAD, LEFT_HAND),
  };
  // A visible keypoint is a filled dot, an occluded one a ring with the image inside, the skipped
  // one and its skeleton edge are not drawn (the edge between two visible ones is).
  const ok = seen.headCentre > 0.8 && seen.footCentre < 0.3 && seen.footRing > 0.15 && seen.placeholder < 0.1
    && seen.rightHandPlacedOnce < 0.1 && seen.headToRightHand < 0.2 && seen.headToLeftHand > 0.6;
  if (!ok) throw new Error(JSON.stringify(seen));
  return ok;
});
await screenshot(a, 'keypoints-drawn');

await finish('keypoints');
