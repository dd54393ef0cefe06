// Bug 3 of issue 13: no layout shift moves the canvas while a polygon is drawn. At 1280×720,
// 1440×900 and 1920×1080 the canvas's bounding box is identical before and after every click
// of a polygon (the hint that grows with each point, the save state, the toast), and the
// saved points are where the mouse clicked. Bug 4: at 390×844 (touch) the pages do not scroll
// sideways, the canvas takes the screen's width, a finger draws a box where it moved and two
// fingers pinch-zoom.
//
// Env (besides harness.mjs's): TESSERA_TASK, a task of 2 images assigned to `drawer` with the
// label car (rectangle, polygon).

import assert from 'node:assert/strict';
import {
  apiGet, at, BASE, clickAt, eventually, finish, log, nearPoints, newUserPage, objectCount, pw, screenshot,
  signIn, token, view, waitSaved, workspace,
} from './harness.mjs';

const TASK = Number(process.env.TESSERA_TASK);
assert.ok(TASK, 'TESSERA_TASK is required');
const USER = 'drawer';
const tok = await token(USER, pw(USER));
const POLY = [[60, 60], [300, 50], [560, 120], [600, 400], [320, 440], [80, 380]];

const box = async (page) => page.locator('#canvas').boundingBox();
const draftPoints = (page) => page.evaluate(() => window.tessera.editor.draft?.points.length ?? 0);

for (const [width, height] of [[1280, 720], [1440, 900], [1920, 1080]]) {
  log(`${width}×${height}: a polygon, the canvas box checked around every click`);
  const page = await newUserPage(BASE, { width, height });
  await signIn(page, USER, pw(USER));
  await page.goto(`${BASE}/tasks/${TASK}`);
  await workspace(page);
  const start = page.getByRole('button', { name: 'Start' });
  if (await start.count()) await start.click();
  await page.locator('#submit').waitFor();
  // The image's file name is in the bar; the state badge follows the Start.
  await page.locator('#image-name', { hasText: /^frame-\d{3}\.png$/ }).waitFor();
  await page.locator('.ws-bar .badge.st-in_progress').waitFor();
  await page.keyboard.press('p');
  for (const [i, p] of POLY.entries()) {
    const before = await box(page);
    await clickAt(page, p);
    await eventually(`point ${i + 1}`, async () => (await draftPoints(page)) === i + 1);
    await page.locator('#draft-hint', { hasText: `${i + 1} points` }).waitFor();
    assert.deepEqual(await box(page), before, `the canvas moved on click ${i + 1} at ${width}×${height}`);
  }
  const before = await box(page);
  await page.keyboard.press('Enter');
  await page.locator('#save-state.saving, #save-state.dirty').first().waitFor();
  assert.deepEqual(await box(page), before, `the canvas moved while saving at ${width}×${height}`);
  await waitSaved(page);
  assert.deepEqual(await box(page), before, `the canvas moved once saved at ${width}×${height}`);
  await screenshot(page, `layout-${width}x${height}`);
  const sha = (await view(page)).sha;
  const saved = (await apiGet(tok, `/api/v1/tasks/${TASK}/images/${sha}/annotations`)).shapes;
  nearPoints(saved[saved.length - 1].points, POLY, `polygon at ${width}×${height}`);
  await page.context().close();
}

log('390×844 phone: the workspace fills the screen; draw a box and pinch-zoom with touch');
{
  const page = await newUserPage(BASE, { width: 390, height: 844 });
  await signIn(page, USER, pw(USER));
  const noSideways = async (what) => assert.ok(
    await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth),
    `${what} is wider than the phone's screen`);
  await noSideways('my tasks');
  await page.goto(`${BASE}/tasks/${TASK}?image=2`);
  await workspace(page);
  await noSideways('the workspace');
  const c = await box(page);
  assert.ok(c.width >= 370 && c.height >= 300, `the canvas is ${c.width}×${c.height} at 390×844`);
  const v = await view(page);
  assert.ok(v.scale * 640 >= 340, `the image is shown ${Math.round(v.scale * 640)} px wide`);
  const cdp = await page.context().newCDPSession(page);
  const touch = (type, points) => cdp.send('Input.dispatchTouchEvent', { type, touchPoints: points.map(([x, y], id) => ({ x, y, id })) });
  await page.getByRole('button', { name: 'Rect' }).tap();
  const RECT = [[100, 80], [400, 300]];
  const [a0, a1] = [await at(page, RECT[0]), await at(page, RECT[1])];
  await touch('touchStart', [a0]);
  for (let i = 1; i <= 5; i++) await touch('touchMove', [[a0[0] + ((a1[0] - a0[0]) * i) / 5, a0[1] + ((a1[1] - a0[1]) * i) / 5]]);
  await touch('touchEnd', []);
  await eventually('the touched box', async () => (await objectCount(page)) === 1);
  await waitSaved(page);
  const saved = (await apiGet(tok, `/api/v1/tasks/${TASK}/images/${v.sha}/annotations`)).shapes;
  nearPoints(saved[0].points, RECT, 'box drawn with a finger');
  await page.getByRole('button', { name: 'Select' }).tap();
  const mid = [c.x + c.width / 2, c.y + c.height / 2];
  await touch('touchStart', [[mid[0] - 40, mid[1]], [mid[0] + 40, mid[1]]]);
  for (let i = 1; i <= 5; i++) await touch('touchMove', [[mid[0] - 40 - 16 * i, mid[1]], [mid[0] + 40 + 16 * i, mid[1]]]);
  await touch('touchEnd', []);
  const pinched = await view(page);
  assert.ok(pinched.scale > v.scale * 2.5, `pinching zoomed from ${v.scale} to ${pinched.scale}`);
  assert.equal(await objectCount(page), 1, 'pinching drew nothing');
  await screenshot(page, 'layout-phone');
  await page.context().close();
}

await finish('layout');
