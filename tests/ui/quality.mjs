// Issue 18 in the browser: a manager sets the quality rules, marks an accepted task's images as
// ground truth, reads the per-annotator figures (Quality tab and dashboard), opens the least
// agreed image with every version drawn over it and picks one annotator's version as its
// consensus (then goes back to the computed one); the review queue puts the careless
// annotator's task first; a webhook is added, its secret shown once, a signed delivery reaches a
// receiver run by this script and shows in the delivery log.
//
// Env (besides harness.mjs's): TESSERA_SET (a set with a `car` rectangle label whose 4 images
// were annotated by ann, bob and eve with overlap 3: ann and bob agree, eve drew far off; ann's
// task accepted, bob's and eve's submitted), TESSERA_ANN_TASK, TESSERA_EVE_TASK,
// TESSERA_BOB_TASK. Users: `mgr` (manager), `rev` (a reviewer of the set).

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import {
  a11y, apiGet, apiSend, eventually, finish, go, log, newUserPage, pw, screenshot, signIn, token,
} from './harness.mjs';

const SET = Number(process.env.TESSERA_SET);
const ANN_TASK = Number(process.env.TESSERA_ANN_TASK);
const BOB_TASK = Number(process.env.TESSERA_BOB_TASK);
const EVE_TASK = Number(process.env.TESSERA_EVE_TASK);
assert.ok(SET && ANN_TASK && BOB_TASK && EVE_TASK, 'TESSERA_SET and the three task ids are required');

const mgr = await newUserPage();
await signIn(mgr, 'mgr', pw('mgr'));
const mgrTok = await token('mgr', pw('mgr'));
const report = () => apiGet(mgrTok, `/api/v1/annotation-sets/${SET}/quality`);

log('rules: 10 % honeypots, review first below 0.5');
await go(mgr, `/sets/${SET}/quality`);
// A quorum above the overlap of the set's tasks (3) is refused, and the page says why.
await mgr.getByLabel('Consensus quorum (annotators)').fill('4');
await mgr.getByRole('button', { name: 'Save rules' }).click();
await mgr.locator('#quality [role="alert"]', { hasText: 'quorum' }).first().waitFor();
await mgr.getByLabel('Consensus quorum (annotators)').fill('');
await mgr.getByLabel('Honeypots (% of each new task)').fill('10');
await mgr.getByLabel('Review first below score').fill('0.5');
await mgr.getByRole('button', { name: 'Save rules' }).click();
await mgr.locator('.toast', { hasText: 'Quality rules saved' }).waitFor();
const set = await apiGet(mgrTok, `/api/v1/annotation-sets/${SET}`);
assert.equal(set.quality.honeypot_fraction, 0.1);
assert.equal(set.quality.review_below, 0.5);

log('ground truth from ann\'s accepted task');
await mgr.getByLabel('From an accepted task').fill(String(ANN_TASK));
await mgr.getByRole('button', { name: 'Mark as ground truth' }).click();
await mgr.locator('.toast', { hasText: '4 images marked as ground truth' }).waitFor();
await mgr.locator('#ground-truth tr[data-image]').nth(3).waitFor();

log('figures: eve scores 0 on the honeypots and agrees with nobody');
await eventually('the quality figures', async () => {
  const r = await report();
  const eve = r.annotators.find((a) => a.annotator === 'eve');
  return r.pending === 0 && eve?.honeypots?.images === 4 && eve.honeypots.score === 0 ? r : null;
});
await go(mgr, `/sets/${SET}/dashboard`);
await go(mgr, `/sets/${SET}/quality`);
const eveRow = mgr.locator('#quality-annotators tr[data-annotator="eve"]');
await eveRow.locator('td[data-col="score"]', { hasText: '0 %' }).waitFor();
await mgr.locator('#quality-annotators tr[data-annotator="ann"] td[data-col="score"]', { hasText: '100 %' }).waitFor();
await mgr.locator(`#quality-tasks tr[data-task="${EVE_TASK}"]`, { hasText: 'review first' }).waitFor();
await a11y(mgr, 'quality tab');
await screenshot(mgr, 'quality-figures');

log('the least agreed image: versions overlaid, bob\'s picked, then the computed one back');
await mgr.locator('#least-agreed button').first().click();
const overlay = mgr.locator('#consensus-overlay');
await overlay.locator('svg.overlay rect').first().waitFor();
// Three versions and the consensus, each a rectangle.
assert.equal(await overlay.locator('svg.overlay rect').count(), 4);
await overlay.getByText('Consensus computed from 3 versions').waitFor();
await overlay.getByRole('button', { name: "Use bob's version" }).click();
await overlay.getByText('Consensus picked by mgr').waitFor();
const sha = await mgr.locator('#least-agreed button').first().getAttribute('data-image');
const picked = await apiGet(mgrTok, `/api/v1/annotation-sets/${SET}/quality/images/${sha}`);
assert.match(picked.chunks[0].pinned.source, /bob's version/);
await screenshot(mgr, 'quality-overlay');
await overlay.getByRole('button', { name: 'Back to the computed consensus' }).click();
await overlay.getByText('Consensus computed from 3 versions').waitFor();
assert.equal((await apiGet(mgrTok, `/api/v1/annotation-sets/${SET}/quality/images/${sha}`)).chunks[0].pinned, null);

log('dashboard: the quality table');
await go(mgr, `/sets/${SET}/dashboard`);
await mgr.locator('#dashboard-quality tr[data-annotator="eve"] td[data-col="agreement"]', { hasText: '0 %' }).waitFor();

log('export: one annotator\'s versions with quality.csv, from the dialog');
await mgr.locator('#export-open').click();
await mgr.getByLabel('Format').selectOption('csv');
await mgr.getByLabel('Shapes from').selectOption('annotator');
await mgr.getByLabel('Annotator', { exact: true }).fill('eve');
await mgr.getByLabel("add quality.csv (each image's source and agreement)").check();
await mgr.locator('#export-start').click();
await mgr.locator('#export-download').waitFor();
await mgr.locator('#export-status', { hasText: 'shapes from (annotator): one task\'s version 4' }).waitFor();
await mgr.locator('#export-close').click();

log('review queue: eve\'s task first, flagged');
await go(mgr, '/review');
const first = mgr.locator('#review-queue tbody tr').first();
await first.waitFor();
assert.equal(await first.getAttribute('data-task'), String(EVE_TASK));
await first.getByText('review first').waitFor();
assert.equal(await mgr.locator(`#review-queue tr[data-task="${BOB_TASK}"]`).getAttribute('data-review-first'), 'false');
await mgr.getByLabel('Order').selectOption('agreement');
await mgr.waitForURL(/order=agreement/);
await mgr.locator(`#review-queue tbody tr[data-task="${EVE_TASK}"]`).waitFor();
assert.equal(await mgr.locator('#review-queue tbody tr').first().getAttribute('data-task'), String(EVE_TASK));

log('a reviewer of the set: from the review queue to its quality page, a version picked');
const rev = await newUserPage();
await signIn(rev, 'rev', pw('rev'));
await go(rev, '/review');
await rev.getByRole('link', { name: /^Quality of / }).first().click();
await rev.waitForURL(new RegExp(`/quality/${SET}$`));
await rev.locator('#quality-annotators tr[data-annotator="eve"]').waitFor();
assert.equal(await rev.getByRole('button', { name: 'Save rules' }).count(), 0, 'reviewers read the rules');
await rev.locator('#least-agreed button').first().click();
await rev.locator('#consensus-overlay').getByRole('button', { name: "Use ann's version" }).click();
await rev.locator('#consensus-overlay').getByText('Consensus picked by rev').waitFor();
await rev.locator('#consensus-overlay').getByRole('button', { name: 'Back to the computed consensus' }).click();
await rev.locator('#consensus-overlay').getByText('Consensus computed from 3 versions').waitFor();
await a11y(rev, 'reviewer quality page');

log('webhooks: a receiver here, a hook for accepted tasks, a signed delivery in the log');
const got = [];
const server = createServer((req, res) => {
  let body = '';
  req.on('data', (c) => { body += c; });
  req.on('end', () => { got.push({ headers: req.headers, body }); res.writeHead(204).end(); });
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const url = `http://127.0.0.1:${server.address().port}/hook`;
await go(mgr, '/webhooks');
await mgr.getByLabel('URL').fill('ftp://nowhere.example/');
await mgr.getByLabel('Task accepted').check();
await mgr.getByRole('button', { name: 'Add webhook' }).click();
await mgr.locator('form [role="alert"]', { hasText: 'http' }).waitFor();
await mgr.getByLabel('URL').fill(url);
await mgr.getByLabel('Annotation set (empty: every set)').fill(String(SET));
await mgr.getByRole('button', { name: 'Add webhook' }).click();
const secret = await mgr.locator('#webhook-secret').textContent();
assert.match(secret, /^[0-9a-f]{64}$/);
await a11y(mgr, 'webhook secret');
await mgr.getByRole('button', { name: 'Done' }).click();
await mgr.locator('#webhooks tr[data-webhook]').waitFor();
assert.ok(!(await mgr.locator('#webhooks').textContent()).includes(secret), 'the secret is shown once');
await apiSend(mgrTok, 'POST', `/api/v1/tasks/${BOB_TASK}/review`);
await apiSend(mgrTok, 'POST', `/api/v1/tasks/${BOB_TASK}/accept`);
const delivery = await eventually('the delivery', () => got.find((g) => g.headers['tessera-event'] === 'task.accepted'));
const [t, v1] = delivery.headers['tessera-signature'].split(',').map((p) => p.split('=')[1]);
assert.equal(v1, createHmac('sha256', Buffer.from(secret, 'hex')).update(`${t}.${delivery.body}`).digest('hex'));
assert.equal(JSON.parse(delivery.body).data.task, BOB_TASK);
await eventually('the log line', async () => {
  await mgr.getByRole('button', { name: /Deliveries of webhook/ }).click();
  return (await mgr.locator('#webhook-log tr[data-outcome="delivered"] td[data-col="status"]', { hasText: '204' }).count()) > 0;
});
await a11y(mgr, 'webhooks page');
await screenshot(mgr, 'webhooks');
server.close();
await finish('quality');
