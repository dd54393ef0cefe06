// Issue 13, thumbnails: the dataset grid and the workspace strip load `?size=thumb`, the
// workspace shows `?size=preview` first and fetches the original only when zoom asks for it.
// Prints the bytes one page of thumbnails costs next to what its originals would.
//
// Env (besides harness.mjs's): TESSERA_DATASET (images named big.png, 2000×1500, then
// frame-NNN.png, 640×480), TESSERA_TASK (all of them, assigned to `viewer`), TESSERA_BIG (the
// hash of big.png). Users: `mgr` (manager), `viewer` (annotator).

import assert from 'node:assert/strict';
import {
  apiGet, eventually, finish, go, log, newUserPage, pw, screenshot, signIn, token, workspace,
} from './harness.mjs';

const DATASET = Number(process.env.TESSERA_DATASET);
const TASK = Number(process.env.TESSERA_TASK);
const BIG = process.env.TESSERA_BIG;
assert.ok(DATASET && TASK && BIG, 'TESSERA_DATASET, TESSERA_TASK and TESSERA_BIG are required');

/** Every object response of `page`: its URL and body length, recorded as they arrive. */
function recordObjects(page) {
  const seen = [];
  page.on('response', async (r) => {
    if (!new URL(r.url()).pathname.startsWith('/objects/')) return;
    const body = await r.body().catch(() => Buffer.alloc(0));
    seen.push({ url: r.url(), status: r.status(), bytes: body.length });
  });
  return seen;
}

log('dataset page: the grid loads thumbnails');
const mgr = await newUserPage();
await signIn(mgr, 'mgr', pw('mgr'));
const mgrTok = await token('mgr', pw('mgr'));
const objects = recordObjects(mgr);
await go(mgr, `/datasets/${DATASET}`);
const grid = mgr.locator('#thumbs img');
await grid.first().waitFor();
await eventually('thumbnails to load', () => grid.evaluateAll((imgs) => imgs.every((i) => i.complete && i.naturalWidth > 0)));
const sources = await grid.evaluateAll((imgs) => imgs.map((i) => i.getAttribute('src')));
assert.ok(sources.length > 0);
for (const src of sources) assert.match(src, /[?&]size=thumb(&|$)/, `grid image ${src}`);
await eventually('every thumbnail response recorded', () => objects.length >= sources.length);
assert.ok(objects.every((o) => o.status === 200 && /size=thumb/.test(o.url)), JSON.stringify(objects));
const thumbBytes = objects.reduce((n, o) => n + o.bytes, 0);
let originalBytes = 0;
for (const src of sources) {
  const sha = new URL(src, 'http://x').pathname.split('/').pop();
  originalBytes += (await apiGet(mgrTok, `/api/v1/objects/${sha}`)).size;
}
log(`a page of ${sources.length} thumbnails: ${thumbBytes} bytes transferred; the originals: ${originalBytes} bytes (${(originalBytes / thumbBytes).toFixed(1)}×)`);
assert.ok(thumbBytes < originalBytes, `thumbnails (${thumbBytes} B) are smaller than the originals (${originalBytes} B)`);
await screenshot(mgr, 'thumbs-dataset');

log('workspace: strip thumbnails, the preview first, the original once zoomed past it');
const page = await newUserPage();
await signIn(page, 'viewer', pw('viewer'));
const seen = recordObjects(page);
await page.goto(`${page.base}/tasks/${TASK}`);
await workspace(page);
const canvas = page.locator('#canvas');
assert.equal(await canvas.getAttribute('data-sha'), BIG, 'big.png comes first');
// Coordinates stay in the original's displayed frame while the preview is drawn.
assert.equal(await canvas.getAttribute('data-width'), '2000');
assert.equal(await canvas.getAttribute('data-height'), '1500');
const strip = await page.locator('#strip img').evaluateAll((imgs) => imgs.map((i) => i.getAttribute('src')));
assert.ok(strip.length > 0, 'the strip has images');
for (const src of strip) assert.match(src, /[?&]size=thumb(&|$)/, `strip image ${src}`);
const bigRequests = () => seen.filter((o) => o.url.includes(BIG));
await eventually('the preview of big.png', () => bigRequests().some((o) => /size=preview/.test(o.url)));
const drawn = () => page.evaluate(() => window.tessera.editor.image.naturalWidth);
assert.equal(await drawn(), 1280, 'the preview is drawn');
assert.ok(!bigRequests().some((o) => !/size=/.test(o.url)), 'the original is not fetched before zooming');
const box = await canvas.boundingBox();
await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
for (let i = 0; i < 6; i++) await page.mouse.wheel(0, -400);
await eventually('the original replaces the preview', async () => (await drawn()) === 2000);
assert.ok(bigRequests().some((o) => !/size=/.test(o.url)), 'the original was fetched');
log('next image and back: the original is drawn again at once');
await page.keyboard.press('d');
await eventually('the next image', async () => (await canvas.getAttribute('data-sha')) !== BIG);
await page.keyboard.press('a');
await eventually('big.png again, from its original', async () =>
  (await canvas.getAttribute('data-sha')) === BIG && (await drawn()) === 2000);
await screenshot(page, 'thumbs-zoomed');

await finish('thumbs');
