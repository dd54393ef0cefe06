// The crowdsourced workflow of issue 6 in headless Debian chromium against a running cluster:
//   1. admin creates a manager and two annotators;
//   2. the manager uploads images and an archive, creates an annotation set with three labels
//      (one with keypoints), splits into tasks with overlap 1 and assigns them;
//   3. annotator A draws a rectangle, a polygon and keypoints with real mouse events, sets an
//      attribute, moves to the next image, undoes and redoes, and submits;
//   4. a second tab saves the same image first: the first tab gets the conflict dialog and keeps
//      its shapes, the other tab's version stays in the history;
//   5. the manager (as reviewer) rejects with a comment, A fixes and resubmits, the manager accepts;
//   6. the dashboard shows counts, charts and the Review table (A's one rejection and rework);
//      the manager exports COCO from the dialog and the downloaded file holds the drawn shapes.
// Shapes read back through the API must have the drawn pixel coordinates (±1 px).
//
// Env: TESSERA_URL (a node), TESSERA_URL2 (another node, optional), TESSERA_ADMIN_PASSWORD,
// TESSERA_IMAGES_DIR (PNG files to upload), TESSERA_ARTEFACTS (screenshots; default
// target/ui-artefacts), TESSERA_RUN (suffix for names, so runs can share a cluster).

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import {
  a11y, a11yChecked, ADMIN_PASSWORD, apiGet, ART, BASE, browser, clickAt, cspViolations, dragBetween, errors,
  eventually, go, log, near, nearPoints, newUserPage, objectCount, pw, screenshot, signIn, token, view, waitSaved,
  workspace,
} from './harness.mjs';
import { unzip, zip } from './zip.mjs';

const BASE2 = process.env.TESSERA_URL2 || BASE;
const IMAGES = process.env.TESSERA_IMAGES_DIR;
const RUN = process.env.TESSERA_RUN || '';
const SKIP = new Set((process.env.TESSERA_UI_SKIP || '').split(',').filter(Boolean));
assert.ok(IMAGES, 'TESSERA_IMAGES_DIR is required');

const MGR = `mgr${RUN}`;
const ANN_A = `ann-a${RUN}`;
const ANN_B = `ann-b${RUN}`;

// ---------------------------------------------------------------------------------------------
// 1. Admin creates a manager and two annotators.
log('step 1: users');
const admin = await newUserPage();
await admin.goto(`${BASE}/login`);
await admin.getByLabel('Username').waitFor();
await a11y(admin, 'sign-in');
await signIn(admin, 'admin', ADMIN_PASSWORD);
// An injected inline script (what an XSS would add) is refused by the policy and reported: the
// check above sees violations, and the UI itself must cause none.
await admin.evaluate(() => {
  const s = document.createElement('script');
  s.textContent = 'window.__injected = true';
  document.head.append(s);
});
await eventually('the injected script to be reported', () => cspViolations.length > 0);
assert.equal(await admin.evaluate(() => window.__injected), undefined, 'an inline script ran');
assert.match(cspViolations.join(), /script-src/);
cspViolations.length = 0;
await go(admin, '/admin/users');
for (const [user, role] of [[MGR, 'manager'], [ANN_A, 'annotator'], [ANN_B, 'annotator']]) {
  await admin.getByLabel('Username').fill(user);
  await admin.getByLabel('Password').fill(pw(user));
  await admin.locator('#new-role').selectOption(role);
  await admin.getByRole('button', { name: 'Create user' }).click();
  await admin.locator(`#users tr[data-user="${user}"]`).waitFor();
}
await screenshot(admin, 'admin-users');
await a11y(admin, 'users');
// The session survives a reload.
await admin.reload();
await admin.locator('#users tr[data-user="admin"]').waitFor();
await admin.getByText('admin ·').waitFor();
await go(admin, '/admin/cluster');
await admin.locator('#nodes tr[data-up="true"]').nth(2).waitFor();
await admin.locator('#rate-total', { hasText: 'requests/s' }).waitFor();
await screenshot(admin, 'admin-cluster');
await a11y(admin, 'cluster');

// 2. The manager uploads, creates the annotation set, splits and assigns.
log('step 2: dataset, upload, schema, split');
const mgr = await newUserPage();
await signIn(mgr, MGR, pw(MGR));
await mgr.waitForURL(/\/datasets$/);
await mgr.getByLabel('New dataset name').fill(`street${RUN}`);
await mgr.getByRole('button', { name: 'Create dataset' }).click();
await mgr.waitForURL(/\/datasets\/\d+$/);
const datasetId = Number(new URL(mgr.url()).pathname.split('/').pop());
const pngs = readdirSync(IMAGES).filter((f) => f.endsWith('.png')).sort();
assert.ok(pngs.length >= 4, 'at least four test images');
// Two loose images through the objects API, the rest in an archive through the import API.
const loose = SKIP.has('import') ? pngs : pngs.slice(0, 2);
await mgr.locator('#upload-files').setInputFiles(loose.map((f) => join(IMAGES, f)));
await mgr.locator('.upload[data-kind="images"][data-state="done"]').waitFor();
if (!SKIP.has('import')) {
  // The rest of the images, one already uploaded (a duplicate) and a file that is no image.
  const archive = zip([
    ...pngs.slice(2).map((f) => ({ name: `batch/${f}`, data: readFileSync(join(IMAGES, f)) })),
    { name: 'batch/again.png', data: readFileSync(join(IMAGES, pngs[0])) },
    { name: 'batch/notes.txt', data: Buffer.from('not an image') },
  ]);
  await mgr.locator('#upload-files').setInputFiles({ name: 'batch.zip', mimeType: 'application/zip', buffer: archive });
  const row = mgr.locator('.upload[data-kind="import"]').first();
  await row.and(mgr.locator('[data-state="done"]')).waitFor();
  await row.locator('.badge.st-succeeded').waitFor({ timeout: 1000 }).catch(async () => {
    throw new Error(`import did not succeed: ${await row.textContent()}`);
  });
  const summary = await row.locator('.detail .counts').textContent();
  assert.match(summary, new RegExp(`images added ${pngs.length - 2}\\b`), summary);
  assert.match(summary, /duplicates 1\b/, summary);
  assert.match(summary, /skipped 1\b/, summary);
  await row.getByText('1 skipped').click();
  await row.getByText(/notes\.txt: /).waitFor();
}
// Drag and drop onto the drop zone (a file already in the dataset: nothing new is added).
const dropped = await mgr.evaluateHandle(([name, b64]) => {
  const dt = new DataTransfer();
  dt.items.add(new File([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], name, { type: 'image/png' }));
  return dt;
}, [loose[0], readFileSync(join(IMAGES, loose[0])).toString('base64')]);
await mgr.locator('#dropzone').dispatchEvent('dragover', { dataTransfer: dropped });
await mgr.locator('#dropzone').dispatchEvent('drop', { dataTransfer: dropped });
await mgr.locator('.upload[data-kind="images"][data-state="done"]', { hasText: '0 images added, 1 already in the dataset' }).waitFor();
const expectedImages = SKIP.has('import') ? loose.length : pngs.length;
await mgr.locator('#image-count', { hasText: `${expectedImages} images` }).waitFor();
await mgr.locator('#thumbs img').nth(expectedImages - 1).waitFor();
await eventually('thumbnails to load', () => mgr.locator('#thumbs img').evaluateAll((imgs) => imgs.every((i) => i.complete && i.naturalWidth > 0)));
await screenshot(mgr, 'dataset-uploaded');
await a11y(mgr, 'dataset');

await mgr.getByRole('link', { name: 'New annotation set' }).click();
await mgr.waitForURL(/\/sets\/new/);
await mgr.getByLabel('Annotation set name').fill('v1');
const labelRows = mgr.locator('#labels .label-row');
// Label 1: car, rectangle + polygon, a required select attribute.
await labelRows.nth(0).getByLabel('Label name').fill('car');
await labelRows.nth(0).getByLabel('Polygon').check();
await labelRows.nth(0).getByRole('button', { name: 'Add attribute' }).click();
await labelRows.nth(0).getByLabel('Attribute name').fill('colour');
await labelRows.nth(0).getByLabel('Options (comma separated)').fill('red, blue, white');
// Label 2: person keypoints with a skeleton.
await mgr.getByRole('button', { name: 'Add label' }).click();
await labelRows.nth(1).getByLabel('Label name').fill('person');
await labelRows.nth(1).getByLabel('Rectangle', { exact: true }).uncheck();
await labelRows.nth(1).getByLabel('Keypoints').check();
await labelRows.nth(1).getByLabel(/Keypoint names/).fill('head, left hand, right hand');
await labelRows.nth(1).getByLabel(/Skeleton edges/).fill('head-left hand, head-right hand');
// Label 3: sign, polygon and image-level tag.
await mgr.getByRole('button', { name: 'Add label' }).click();
await labelRows.nth(2).getByLabel('Label name').fill('sign');
await labelRows.nth(2).getByLabel('Tag (image-level)').check();
await labelRows.nth(2).getByLabel('Rotated rectangle').check();
await labelRows.nth(2).getByLabel('Polyline').check();
await screenshot(mgr, 'schema-editor');
await a11y(mgr, 'schema editor');
await mgr.getByRole('button', { name: 'Create annotation set' }).click();
await mgr.waitForURL(/\/sets\/\d+\/tasks$/);
const setId = Number(new URL(mgr.url()).pathname.split('/')[2]);
const mgrToken = await token(MGR, pw(MGR));
const set = await apiGet(mgrToken, `/api/v1/annotation-sets/${setId}`);
assert.deepEqual(set.labels.map((l) => l.name), ['car', 'person', 'sign']);
assert.deepEqual(set.labels[1].skeleton, [[0, 1], [0, 2]]);
const chunk = Math.ceil(expectedImages / 2);
await mgr.getByLabel('Chunk size (images per task)').fill(String(chunk));
await mgr.getByLabel('Overlap (annotators per image)').fill('1');
await mgr.getByLabel('Assignees (comma separated)').fill(`${ANN_A}, ${ANN_B}`);
await mgr.getByRole('button', { name: 'Split', exact: true }).click();
await mgr.locator('#tasks tr[data-task]').nth(1).waitFor();
const tasks = (await apiGet(mgrToken, `/api/v1/annotation-sets/${setId}/tasks`)).items;
assert.equal(tasks.length, 2);
const taskA = tasks.find((t) => t.assignee === ANN_A);
assert.ok(taskA, `a task for ${ANN_A}: ${JSON.stringify(tasks)}`);
// Task B back to the pool; annotator B claims it there.
const taskB = tasks.find((t) => t.assignee === ANN_B);
const rowB = mgr.locator(`#tasks tr[data-task="${taskB.id}"]`);
await rowB.getByLabel(`Assignee of task ${taskB.id}`).fill('');
await rowB.getByRole('button', { name: 'Reassign' }).click();
await mgr.locator(`#tasks tr[data-task="${taskB.id}"]`, { hasText: 'pool' }).waitFor();
const b = await newUserPage();
await signIn(b, ANN_B, pw(ANN_B));
await b.locator(`#pool-tasks tr[data-task="${taskB.id}"]`).getByRole('button', { name: 'Claim' }).click();
await b.locator(`#my-tasks tr[data-task="${taskB.id}"][data-state="new"]`).waitFor();
await b.context().close();
await screenshot(mgr, 'tasks-split');
await a11y(mgr, 'tasks');

// 3. Annotator A draws with the mouse.
log('step 3: annotate');
const a = await newUserPage();
await signIn(a, ANN_A, pw(ANN_A));
await go(a, '/my-tasks');
await a.locator('#my-tasks tr[data-task]').first().waitFor();
await a11y(a, 'my tasks');
const myRow = a.locator(`#my-tasks tr[data-task="${taskA.id}"]`);
await myRow.getByRole('button', { name: 'Start' }).click();
await a.waitForURL(new RegExp(`/tasks/${taskA.id}`));
await workspace(a);
await waitSaved(a);
// First paint of the workspace on a reload (the image and its shapes drawn), on loopback.
const reloadStart = Date.now();
await a.reload();
await workspace(a);
const firstPaint = Date.now() - reloadStart;
log(`workspace first paint after reload: ${firstPaint} ms`);
assert.ok(firstPaint < 2000, `the workspace took ${firstPaint} ms to show`);
await waitSaved(a);
// The next images and their shapes are fetched before they are asked for.
const task = await a.evaluate((id) => window.tessera.api(`/api/v1/tasks/${id}`), taskA.id);
await eventually('the next image to be prefetched', () => a.evaluate((sha) => performance.getEntriesByType('resource')
  .some((r) => r.name.includes(`/objects/${sha}`)) && performance.getEntriesByType('resource')
  .some((r) => r.name.includes(`/images/${sha}/annotations`)), task.images[1].sha256));
// The shortcut overlay.
await a.locator('#canvas').focus();
await a.keyboard.press('?');
await a.getByRole('dialog', { name: 'Keyboard shortcuts' }).waitFor();
await screenshot(a, 'shortcuts');
await a.keyboard.press('Escape');
await a.getByRole('dialog', { name: 'Keyboard shortcuts' }).waitFor({ state: 'detached' });
const v0 = await view(a);
log('view', JSON.stringify(v0));
// A rectangle (label 1: car).
await a.keyboard.press('1');
await a.keyboard.press('r');
const RECT = [[100, 80], [300, 240]];
await dragBetween(a, RECT[0], RECT[1]);
await eventually('the rectangle', async () => (await objectCount(a)) === 1);
// Its attribute.
await a.locator('#attributes [data-attr="colour"]').selectOption('blue');
// A polygon, closed by clicking its first point.
await a.keyboard.press('p');
const POLY = [[350, 100], [500, 120], [520, 260], [380, 300]];
for (const p of POLY) await clickAt(a, p);
await clickAt(a, POLY[0]);
await eventually('the polygon', async () => (await objectCount(a)) === 2);
// Keypoints of a person (label 2): one click per named keypoint.
await a.keyboard.press('2');
await a.keyboard.press('k');
const KP = [[200, 330], [150, 400], [260, 410]];
for (const p of KP) await clickAt(a, p);
await eventually('the keypoints', async () => (await objectCount(a)) === 3);
// An image-level tag; leaving while it is being saved (the save held back here) asks first,
// and dismissing the question keeps the page.
let release;
const held = new Promise((r) => { release = r; });
const holdSaves = async (route) => { if (route.request().method() === 'PUT') await held; await route.fallback(); };
await a.route(/\/annotations$/, holdSaves);
await a.locator('#tags').getByLabel('sign').check();
await eventually('the tag', async () => (await objectCount(a)) === 4);
await a.locator('#save-state.saving').waitFor();
const asked = new Promise((resolve, reject) => {
  a.once('dialog', (d) => { resolve(d.message()); d.dismiss(); });
  setTimeout(() => reject(new Error('no unsaved-changes question')), 10_000);
});
await a.getByRole('link', { name: '← Back' }).click();
assert.match(await asked, /still being saved/);
assert.match(a.url(), new RegExp(`/tasks/${taskA.id}`));
release();
await a.unroute(/\/annotations$/, holdSaves);
await a.keyboard.press('Escape');
await waitSaved(a);
await screenshot(a, 'annotator-drawn');
await a11y(a, 'workspace');
const firstSha = v0.sha;

// Zoom in with the wheel and pan with space+drag: drawing stays exact at another zoom.
await a.keyboard.press('d');
await a.locator('#canvas[data-n="1"]').waitFor();
await waitSaved(a);
const c1 = await a.locator('#canvas').boundingBox();
await a.mouse.move(c1.x + c1.width / 2, c1.y + c1.height / 2);
await a.mouse.wheel(0, -300);
await eventually('zoom', async () => (await view(a)).scale > v0.scale * 1.2);
await a.keyboard.down(' ');
await a.mouse.move(c1.x + c1.width / 2, c1.y + c1.height / 2);
await a.mouse.down();
await a.mouse.move(c1.x + c1.width / 2 + 60, c1.y + c1.height / 2 + 40, { steps: 5 });
await a.mouse.up();
await a.keyboard.up(' ');
const v1 = await view(a);
log('zoomed view', JSON.stringify(v1));
await a.keyboard.press('1');
await a.keyboard.press('r');
const RECT2 = [[260, 200], [360, 280]];
await dragBetween(a, RECT2[0], RECT2[1]);
await eventually('the second rectangle', async () => (await objectCount(a)) === 1);
// Undo removes it, redo brings it back.
await a.keyboard.press('Control+z');
await eventually('undo', async () => (await objectCount(a)) === 0);
await a.keyboard.press('Control+Shift+z');
await eventually('redo', async () => (await objectCount(a)) === 1);
await waitSaved(a);
await screenshot(a, 'annotator-zoomed-second-image');
const secondSha = v1.sha;

// 4. A second tab on the same image saves first; the first tab sees the conflict and keeps its work.
log('step 4: conflict');
const tab2 = await a.context().newPage();
tab2.on('pageerror', (e) => { errors.push(e.message); console.log('pageerror (tab 2):', e.message); });
// On another node when TESSERA_URL2 names one (its own origin, so it signs in there).
tab2.base = BASE2;
if (BASE2 !== BASE) await signIn(tab2, ANN_A, pw(ANN_A));
await tab2.goto(`${BASE2}/tasks/${taskA.id}?image=2`);
await tab2.locator('#canvas[data-n="1"]').waitFor();
await waitSaved(tab2);
await tab2.keyboard.press('3');
await tab2.keyboard.press('p');
const THEIRS = [[20, 20], [80, 20], [50, 70]];
for (const p of THEIRS) await clickAt(tab2, p);
await tab2.keyboard.press('Enter');
await eventually('tab 2 polygon', async () => (await objectCount(tab2)) === 2);
await waitSaved(tab2);
// Back in the first tab (still on the version before tab 2's save): move the rectangle.
await a.bringToFront();
await a.keyboard.press('v');
const MOVE = [20, 10];
const mid = [(RECT2[0][0] + RECT2[1][0]) / 2, (RECT2[0][1] + RECT2[1][1]) / 2];
await dragBetween(a, mid, [mid[0] + MOVE[0], mid[1] + MOVE[1]]);
const dialog = a.locator('dialog[open] #conflict');
await dialog.waitFor();
await screenshot(a, 'conflict-dialog');
await a11y(a, 'conflict dialog');
assert.match(await dialog.textContent(), /Theirs: 2 shapes/);
assert.match(await dialog.textContent(), /Yours: 1 shapes/);
await a.getByRole('button', { name: 'Keep mine' }).click();
await waitSaved(a);
await tab2.close();

// The third image: a rotated rectangle turned with ] and a polyline finished with Enter.
await a.keyboard.press('d');
await a.locator('#canvas[data-n="2"]').waitFor();
await a.keyboard.press('f');
await a.keyboard.press('3');
await a.keyboard.press('t');
const ROT = [[120, 100], [220, 160]];
await dragBetween(a, ROT[0], ROT[1]);
await eventually('the rotated rectangle', async () => (await objectCount(a)) === 1);
await a.keyboard.press(']');
await a.keyboard.press(']');
await eventually('the angle', async () => (await a.locator('#shape-angle').inputValue()) === '10');
await a.keyboard.press('l');
const LINE = [[300, 300], [400, 320], [450, 400]];
for (const p of LINE) await clickAt(a, p);
await a.keyboard.press('Enter');
await eventually('the polyline', async () => (await objectCount(a)) === 2);
await waitSaved(a);
await screenshot(a, 'rotated-and-polyline');
const thirdSha = (await view(a)).sha;

// 3 (end). Submit, then check every drawn coordinate through the API.
await a.getByRole('button', { name: 'Submit task' }).click();
await a.waitForURL(/\/my-tasks$/);
await a.locator(`#my-tasks tr[data-task="${taskA.id}"][data-state="submitted"]`).waitFor();
const aToken = await token(ANN_A, pw(ANN_A));
const first = await apiGet(aToken, `/api/v1/tasks/${taskA.id}/images/${firstSha}/annotations`);
const byKind = (shapes, kind) => shapes.filter((s) => s.kind === kind);
nearPoints(byKind(first.shapes, 'rectangle')[0].points, RECT, 'rectangle');
assert.deepEqual(byKind(first.shapes, 'rectangle')[0].attributes, { colour: 'blue' });
nearPoints(byKind(first.shapes, 'polygon')[0].points, POLY, 'polygon');
nearPoints(byKind(first.shapes, 'points')[0].points, KP, 'keypoints');
assert.equal(byKind(first.shapes, 'points')[0].label, 'person');
assert.equal(byKind(first.shapes, 'tag')[0].label, 'sign');
const second = await apiGet(aToken, `/api/v1/tasks/${taskA.id}/images/${secondSha}/annotations`);
assert.equal(second.shapes.length, 1, `kept mine: ${JSON.stringify(second.shapes)}`);
nearPoints(second.shapes[0].points, RECT2.map(([x, y]) => [x + MOVE[0], y + MOVE[1]]), 'moved rectangle (zoomed)');
const third = await apiGet(aToken, `/api/v1/tasks/${taskA.id}/images/${thirdSha}/annotations`);
const rot = byKind(third.shapes, 'rotated_rectangle')[0];
nearPoints(rot.points, ROT, 'rotated rectangle');
assert.equal(rot.angle, 10);
nearPoints(byKind(third.shapes, 'polyline')[0].points, LINE, 'polyline');
const hist = await apiGet(aToken, `/api/v1/tasks/${taskA.id}/images/${secondSha}/annotations/history`);
const theirs = hist.items.find((v) => v.shapes.some((s) => s.kind === 'polygon'));
assert.ok(theirs, 'the other tab\'s version is kept in the history');
nearPoints(theirs.shapes.find((s) => s.kind === 'polygon').points, THEIRS, 'the other tab\'s polygon');

// 5. Review: reject with a comment, rework, accept.
log('step 5: review');
await go(mgr, `/sets/${setId}/tasks`);
await mgr.locator(`#tasks tr[data-task="${taskA.id}"]`).getByRole('button', { name: 'Review' }).click();
await mgr.waitForURL(new RegExp(`/tasks/${taskA.id}`));
await workspace(mgr);
await mgr.keyboard.press('c');
await clickAt(mgr, [310, 250]);
await mgr.getByLabel('Comment', { exact: true }).fill('The car box is too tight at the bottom right');
await mgr.getByRole('button', { name: 'OK' }).click();
await mgr.locator('#comments li[data-comment]').waitFor();
await screenshot(mgr, 'review-comment');
await mgr.getByRole('button', { name: 'Reject…' }).click();
await mgr.getByLabel(/Reason/).fill('see the comment on the first image');
await mgr.getByRole('button', { name: 'OK' }).click();
await mgr.waitForURL(/\/sets\/\d+\/tasks$/);
await mgr.locator(`#tasks tr[data-task="${taskA.id}"][data-state="rejected"]`).waitFor();

await go(a, '/my-tasks');
const rejectedRow = a.locator(`#my-tasks tr[data-task="${taskA.id}"][data-state="rejected"]`);
await rejectedRow.getByText('Rejected: see the comment on the first image').waitFor();
await rejectedRow.getByRole('cell', { name: 'v1', exact: true }).waitFor();
await rejectedRow.getByRole('button', { name: 'Start rework' }).click();
await a.waitForURL(new RegExp(`/tasks/${taskA.id}`));
await a.locator('#comments li[data-comment]', { hasText: 'too tight' }).waitFor();
await a.getByText('Rejected: see the comment').waitFor();
await screenshot(a, 'rework-with-comment');
// The annotator answers the thread.
await a.locator('#comments li[data-comment]').getByRole('button', { name: 'Reply' }).click();
await a.getByLabel('Your reply').fill('Fixed, thanks');
await a.getByRole('button', { name: 'OK' }).click();
await a.locator('#comments li[data-comment]', { hasText: 'Fixed, thanks' }).waitFor();
// Fix: drag the rectangle's bottom-right corner out by 10 px.
await a.keyboard.press('v');
await clickAt(a, [200, 160]);
await dragBetween(a, RECT[1], [RECT[1][0] + 10, RECT[1][1] + 10]);
await waitSaved(a);
await a.getByRole('button', { name: 'Submit task' }).click();
await a.waitForURL(/\/my-tasks$/);
const fixed = await apiGet(aToken, `/api/v1/tasks/${taskA.id}/images/${firstSha}/annotations`);
nearPoints(byKind(fixed.shapes, 'rectangle')[0].points, [RECT[0], [RECT[1][0] + 10, RECT[1][1] + 10]], 'resized rectangle');

await go(mgr, `/sets/${setId}/tasks`);
await mgr.locator(`#tasks tr[data-task="${taskA.id}"]`).getByRole('button', { name: 'Review' }).click();
await mgr.waitForURL(new RegExp(`/tasks/${taskA.id}`));
await mgr.getByRole('button', { name: 'Accept' }).click();
await mgr.waitForURL(/\/sets\/\d+\/tasks$/);
await mgr.locator(`#tasks tr[data-task="${taskA.id}"][data-state="accepted"]`).waitFor();

// 6. Dashboard and export.
log('step 6: dashboard, export');
await go(mgr, `/sets/${setId}/dashboard`);
await mgr.locator('#state-counts [data-state="accepted"] b', { hasText: '1' }).waitFor();
await mgr.locator('#images-annotated', { hasText: `3 / ${expectedImages}` }).waitFor();
const labelChart = mgr.locator('[data-chart="Shapes per label"] svg');
assert.match(await labelChart.getAttribute('aria-label'), /car 3/);
assert.match(await labelChart.getAttribute('aria-label'), /person 1/);
assert.match(await mgr.locator('[data-chart="Shapes per annotator"] svg').getAttribute('aria-label'), new RegExp(ANN_A));
// The Review section: the annotator's one rejection, its rework and the acceptance, and the
// manager who decided both reviews.
const reviewRow = mgr.locator(`#review-annotators tr[data-annotator="${ANN_A}"]`);
await reviewRow.locator('td[data-col="rejected"]', { hasText: /^1$/ }).waitFor();
assert.equal(await reviewRow.locator('td[data-col="accepted"]').textContent(), '1');
assert.equal(await reviewRow.locator('td[data-col="rejection_rate"]').textContent(), '50 %');
assert.equal(await reviewRow.locator('td[data-col="reworks"]').textContent(), '1');
assert.notEqual(await reviewRow.locator('td[data-col="rework_median_ms"]').textContent(), '—');
const reviewerRow = mgr.locator(`#review-reviewers tr[data-reviewer="${MGR}"]`);
assert.equal(await reviewerRow.locator('td[data-col="rejected"]').textContent(), '1');
assert.equal(await reviewerRow.locator('td[data-col="accepted"]').textContent(), '1');
await screenshot(mgr, 'dashboard');
await a11y(mgr, 'dashboard');
await mgr.locator('#review-reviewers').scrollIntoViewIfNeeded();
await screenshot(mgr, 'dashboard-review');
// The dataset's thumbnails filtered by annotation state and label.
await go(mgr, `/datasets/${datasetId}`);
await mgr.locator('#filter-set').selectOption(String(setId));
await mgr.locator('#filter-state').selectOption('annotated');
await mgr.getByText(`3 of ${expectedImages} images match`).waitFor();
assert.equal(await mgr.locator('#thumbs img').count(), 3);
await mgr.locator('#filter-label').selectOption('person');
await mgr.getByText(`1 of ${expectedImages} images match`).waitFor();
await screenshot(mgr, 'dataset-filtered');
await go(mgr, `/sets/${setId}/dashboard`);

if (!SKIP.has('export')) {
  await mgr.getByRole('button', { name: 'Export…' }).click();
  await mgr.getByLabel('Format').selectOption('coco');
  await mgr.getByRole('button', { name: 'Start export' }).click();
  const link = mgr.locator('#export-download');
  await link.waitFor({ timeout: 60_000 });
  await screenshot(mgr, 'export-done');
await a11y(mgr, 'export dialog');
  const [download] = await Promise.all([mgr.waitForEvent('download'), link.click()]);
  const file = join(ART, download.suggestedFilename() || 'export.zip');
  await download.saveAs(file);
  const entries = unzip(readFileSync(file));
  const jsonName = [...entries.keys()].find((n) => n.endsWith('.json'));
  assert.ok(jsonName, `a COCO JSON in the export: ${[...entries.keys()].join(', ')}`);
  const coco = JSON.parse(entries.get(jsonName).toString());
  const cat = (name) => coco.categories.find((c) => c.name === name)?.id;
  const boxes = coco.annotations.filter((x) => x.category_id === cat('car') && !(x.segmentation?.[0]?.length > 8));
  const want = [RECT[0][0], RECT[0][1], RECT[1][0] + 10 - RECT[0][0], RECT[1][1] + 10 - RECT[0][1]];
  assert.ok(boxes.some((b) => b.bbox.every((v, i) => Math.abs(v - want[i]) <= 1)), `the drawn car box ${want} in ${JSON.stringify(coco.annotations.map((x) => x.bbox))}`);
  const person = coco.annotations.find((x) => x.category_id === cat('person'));
  assert.ok(person?.keypoints, 'the keypoints in the export');
  KP.forEach(([x, y], i) => { near(person.keypoints[i * 3], x, `keypoint ${i}.x`); near(person.keypoints[i * 3 + 1], y, `keypoint ${i}.y`); });
}

// 7. An annotator's account page: sessions listed with where they came from, two tabs refreshing
// at once (rotation must not look like a stolen token), a script's session signed out from the
// page, and a password change that keeps this session.
log('step 7: account and sessions');
{
  const acct = await newUserPage();
  await signIn(acct, ANN_B, pw(ANN_B));
  const scriptGrant = await fetch(`${BASE}/oauth/token`, {
    method: 'POST', headers: { 'user-agent': 'label-script/1.0' },
    body: new URLSearchParams({ grant_type: 'password', username: ANN_B, password: pw(ANN_B) }),
  });
  assert.equal(scriptGrant.status, 200);
  const script = await scriptGrant.json();
  await acct.getByRole('link', { name: `${ANN_B} · annotator` }).click();
  await acct.waitForURL(/\/account$/);
  const scriptRow = acct.locator(`#sessions tr[data-session="${script.session}"]`);
  await scriptRow.getByText('label-script/1.0').waitFor();
  assert.equal(await acct.locator('#sessions tr[data-current="yes"]').count(), 1);
  await screenshot(acct, 'account');
  await a11y(acct, 'account');
  const otherTab = await acct.context().newPage();
  otherTab.on('pageerror', (e) => { errors.push(e.message); });
  await otherTab.goto(`${BASE}/my-tasks`);
  await otherTab.getByText(`${ANN_B} ·`).waitFor();
  const stored = () => acct.evaluate(() => JSON.parse(localStorage.getItem('tessera.session')));
  const before = await stored();
  // Both tabs find the access token about to expire and refresh at the same moment.
  const expire = () => {
    const s = JSON.parse(localStorage.getItem('tessera.session'));
    localStorage.setItem('tessera.session', JSON.stringify({ ...s, expires: Date.now() }));
  };
  await acct.evaluate(expire);
  await otherTab.evaluate(expire);
  // A tab hears of the other tab's write through a 'storage' event, delivered asynchronously:
  // wait until both tabs hold the expired session, or neither may need to refresh.
  for (const p of [acct, otherTab]) {
    await p.waitForFunction(() => window.tessera.session().expires <= Date.now());
  }
  const [mine, theirs] = await Promise.all([acct, otherTab].map((p) => p.evaluate(() => window.tessera.api('/api/v1/me'))));
  assert.equal(mine.username, ANN_B);
  assert.equal(theirs.username, ANN_B);
  const after = await stored();
  assert.notEqual(after.refresh, before.refresh, 'the refresh token rotated');
  assert.equal(after.session, before.session, 'still the same session');
  assert.equal((await fetch(`${BASE}/api/v1/me`, { headers: { authorization: `Bearer ${after.access}` } })).status, 200, 'the session survived two tabs refreshing');
  await otherTab.close();
  await scriptRow.getByRole('button', { name: 'Sign out this session' }).click();
  await scriptRow.waitFor({ state: 'detached' });
  await eventually('the script session to be refused', async () =>
    (await fetch(`${BASE}/api/v1/me`, { headers: { authorization: `Bearer ${script.access_token}` } })).status === 401);
  await acct.locator('#current-password').fill(pw(ANN_B));
  await acct.locator('#new-password').fill(`${pw(ANN_B)}-2`);
  await acct.getByRole('button', { name: 'Change password' }).click();
  await acct.getByText(/Password changed; \d+ other sessions? signed out/).waitFor();
  await go(acct, '/my-tasks');
  await acct.getByText(`${ANN_B} ·`).waitFor();
  assert.equal(acct.url().includes('/login'), false, 'this session stays signed in');
  await acct.context().close();
}

// Signing out revokes the token.
const session = JSON.parse(await admin.evaluate(() => localStorage.getItem('tessera.session')));
assert.equal((await fetch(`${BASE}/api/v1/me`, { headers: { authorization: `Bearer ${session.access}` } })).status, 200);
await admin.getByRole('button', { name: 'Sign out' }).click();
await admin.waitForURL(/\/login/);
await eventually('the signed-out token to be refused', async () =>
  (await fetch(`${BASE}/api/v1/me`, { headers: { authorization: `Bearer ${session.access}` } })).status === 401);

assert.deepEqual(errors, [], 'no uncaught page errors');
assert.deepEqual(cspViolations, [], 'no Content-Security-Policy violations');
await browser.close();
log(`ok: all steps passed; accessibility checked on ${a11yChecked.join(', ')}`);
