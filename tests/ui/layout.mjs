// Bug 3 of issue 13: no layout shift moves the canvas while a polygon is drawn. At 1280×720,
// 1440×900 and 1920×1080 the canvas's bounding box is identical before and after every click
// of a polygon (the hint that grows with each point, the save state, the toast), and the
// saved points are where the mouse clicked.
//
// Env (besides harness.mjs's): TESSERA_TASK, a task of 2 images assigned to `drawer` with the
// label car (rectangle, polygon).

import assert from 'node:assert/strict';
import {
  apiGet, BASE, browser, clickAt, cspViolations, errors, eventually, log, nearPoints, newUserPage, pw,
  screenshot, signIn, token, view, waitSaved, workspace,
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

assert.deepEqual(errors, [], 'no uncaught page errors');
assert.deepEqual(cspViolations, [], 'no Content-Security-Policy violations');
await browser.close();
log('ok: layout');
process.exit(0);
