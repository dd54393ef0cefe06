// Bug 2 of issue 13: the first split puts images in file-name order (not hash order); a second
// Split takes only the images that have no task in the set, says
// what it left out, and refuses when nothing is left; archiving a task (from the task list,
// after a confirmation) keeps its saved annotations and frees its images for a new split.
//
// Env (besides harness.mjs's): TESSERA_SET (an annotation set with a `car` rectangle label, on a
// dataset of 4 images, no tasks yet), TESSERA_DATASET, TESSERA_LATER (comma separated hashes of
// 2 uploaded images not in the dataset yet). Users: `mgr` (manager), `ann1` (annotator).

import assert from 'node:assert/strict';
import {
  a11y, apiGet, apiSend, eventually, finish, go, log, newUserPage, pw, screenshot, signIn, token,
} from './harness.mjs';
import { zip } from './zip.mjs';

const SET = Number(process.env.TESSERA_SET);
const DATASET = Number(process.env.TESSERA_DATASET);
const LATER = (process.env.TESSERA_LATER || '').split(',').filter(Boolean);
assert.ok(SET && DATASET && LATER.length === 2, 'TESSERA_SET, TESSERA_DATASET and TESSERA_LATER are required');

const mgr = await newUserPage();
await signIn(mgr, 'mgr', pw('mgr'));
await go(mgr, `/sets/${SET}/tasks`);
const mgrTok = await token('mgr', pw('mgr'));
const annTok = await token('ann1', pw('ann1'));
const listed = async () => (await apiGet(mgrTok, `/api/v1/annotation-sets/${SET}/tasks`)).items;
const imagesOf = async (id) => (await apiGet(mgrTok, `/api/v1/tasks/${id}`)).images.map((i) => i.sha256).sort();
const rows = mgr.locator('#tasks tr[data-task]');
async function split() {
  await mgr.getByLabel('Chunk size (images per task)').fill('2');
  await mgr.getByLabel('Assignees (comma separated)').fill('ann1');
  await mgr.getByRole('button', { name: 'Split', exact: true }).click();
}

log('first split: two tasks of two images; ann1 saves a box in the first');
await split();
await rows.nth(1).waitFor();
const [t1, t2] = await listed();
assert.equal(t1.image_count + t2.image_count, 4);
// Images follow the dataset's order (file names), not their hashes.
const names = new Map((await apiGet(mgrTok, `/api/v1/datasets/${DATASET}/images`)).items.map((i) => [i.sha256, i.name]));
const inTasks = [];
for (const t of [t1, t2]) inTasks.push(...(await apiGet(mgrTok, `/api/v1/tasks/${t.id}`)).images.map((i) => names.get(i.sha256)));
assert.deepEqual(inTasks, [...inTasks].sort(), `tasks in file-name order: ${inTasks}`);
const t1Images = await imagesOf(t1.id);
await apiSend(annTok, 'POST', `/api/v1/tasks/${t1.id}/start`);
const box = { label: 'car', kind: 'rectangle', points: [[10, 10], [60, 50]] };
await apiSend(annTok, 'PUT', `/api/v1/tasks/${t1.id}/images/${t1Images[0]}/annotations`, { shapes: [box] }, { 'if-match': '"0"' });

log('two images added: a second split takes only those');
const SPLIT_AGAIN = '1 tasks created from 2 images (4 already had a task and were left out)';
await apiSend(mgrTok, 'POST', `/api/v1/datasets/${DATASET}/images`, { images: LATER.map((sha256) => ({ sha256 })) });
await split();
await mgr.locator('.toast', { hasText: SPLIT_AGAIN }).waitFor();
await rows.nth(2).waitFor();
const third = (await listed()).find((t) => t.id !== t1.id && t.id !== t2.id);
assert.deepEqual(await imagesOf(third.id), [...LATER].sort(), 'the new task holds only the added images');
await screenshot(mgr, 'splits-second');

log('nothing left: a third split is refused with the reason');
await split();
await mgr.locator('form[aria-label="Split into tasks"] .error', { hasText: /all 6 images of the dataset already have a task/ }).waitFor();
assert.equal((await listed()).length, 3, 'no task was created');

log('archiving a task keeps its annotations and frees its images');
await rows.and(mgr.locator(`[data-task="${t1.id}"]`)).getByRole('button', { name: `Archive task ${t1.id}` }).click();
await mgr.getByRole('dialog', { name: `Archive task #${t1.id}` }).waitFor();
await a11y(mgr, 'archive dialog');
await mgr.getByRole('button', { name: 'Archive', exact: true }).click();
await mgr.locator(`#tasks tr[data-task="${t1.id}"][data-state="archived"]`).waitFor();
const kept = await apiGet(mgrTok, `/api/v1/tasks/${t1.id}/images/${t1Images[0]}/annotations`);
assert.deepEqual(kept.shapes, [box], 'the archived task\'s saved shapes are kept');
const mine = (await apiGet(annTok, '/api/v1/me/tasks')).items.map((t) => t.id);
assert.ok(!mine.includes(t1.id), `an archived task is in nobody's list: ${mine}`);
const refused = await fetch(`${process.env.TESSERA_URL}/api/v1/tasks/${t1.id}/images/${t1Images[0]}/annotations`, {
  method: 'PUT', headers: { authorization: `Bearer ${annTok}`, 'content-type': 'application/json', 'if-match': `"${kept.version}"` },
  body: JSON.stringify({ shapes: [] }),
});
assert.equal(refused.status, 403, 'nobody saves into an archived task');
// The second split's toast says the same and may still be showing: wait for a newer one.
const toastNumbers = (locator) => locator.evaluateAll((ts) => ts.map((t) => Number(t.id.replace('toast-', ''))));
const shown = Math.max(0, ...(await toastNumbers(mgr.locator('.toast'))));
await split();
await eventually('a new toast for this split', async () =>
  (await toastNumbers(mgr.locator('.toast', { hasText: SPLIT_AGAIN }))).some((n) => n > shown));
await rows.nth(3).waitFor();
const fourth = (await listed()).find((t) => ![t1.id, t2.id, third.id].includes(t.id));
assert.deepEqual(await imagesOf(fourth.id), t1Images, 'the archived task\'s images are split again');
await screenshot(mgr, 'splits-archived');
await a11y(mgr, 'tasks with an archived task');

log('an idle dashboard reads the statistics and nothing else');
await go(mgr, `/sets/${SET}/dashboard`);
await mgr.locator('#task-progress').waitFor();
const isStats = (r) => r.url().endsWith(`/api/v1/annotation-sets/${SET}/stats`);
await mgr.waitForRequest(isStats, { timeout: 15_000 });
const between = [];
const record = (r) => { if (new URL(r.url()).pathname.startsWith('/api/')) between.push(new URL(r.url()).pathname); };
mgr.on('request', record);
await mgr.waitForRequest(isStats, { timeout: 15_000 });
mgr.off('request', record);
assert.deepEqual(between, [`/api/v1/annotation-sets/${SET}/stats`], 'one request per refresh of an idle dashboard');

log('bug 5: the dataset lists imports only; an import that added nothing is not a success');
const exported = await apiSend(mgrTok, 'POST', `/api/v1/annotation-sets/${SET}/exports`, { format: 'coco' });
await eventually('the export to end', async () => (await apiGet(mgrTok, `/api/v1/jobs/${exported.id}`)).state !== 'running');
await go(mgr, `/datasets/${DATASET}`);
const notes = zip([{ name: 'notes.txt', data: Buffer.from('not an image') }]);
// The import options reach the job.
await mgr.locator('summary', { hasText: 'Video and PDF options' }).click();
await mgr.getByLabel('Video frames per second').fill('2.5');
await mgr.getByLabel('PDF resolution (dpi)').fill('200');
const importRequest = mgr.waitForRequest((r) => r.url().includes(`/api/v1/datasets/${DATASET}/imports?`));
await mgr.locator('#upload-files').setInputFiles({ name: 'notes.zip', mimeType: 'application/zip', buffer: notes });
const importUrl = new URL((await importRequest).url());
assert.equal(importUrl.searchParams.get('video_fps'), '2.5');
assert.equal(importUrl.searchParams.get('pdf_dpi'), '200');
const row = mgr.locator('.upload[data-kind="import"][data-state="done"]');
await row.waitFor();
await row.locator('.badge.st-warning', { hasText: 'nothing imported' }).waitFor();
assert.equal(await row.locator('.st-succeeded').count(), 0, 'no green badge for an import that added nothing');
await mgr.locator('#jobs tr[data-kind="import"]').first().waitFor();
assert.equal(await mgr.locator(`#jobs tr[data-job="${exported.id}"]`).count(), 0, 'the export is not listed as an import');
await screenshot(mgr, 'dataset-imports');

await finish('splits');
