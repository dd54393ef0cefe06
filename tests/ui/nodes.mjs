// Issue 15: an admin grows and shrinks the cluster from the cluster page — the node set with
// each node's groups now and in the target, a refused add that says why, a node added (its
// replicas move to it while the page follows the moves) and removed again (it leaves once its
// replicas have moved away).
//
// Env (besides harness.mjs's): TESSERA_NEW_NODE ("id http rpc" of a node started with
// `tessera run` but not yet a member).

import assert from 'node:assert/strict';
import { a11y, ADMIN_PASSWORD, eventually, finish, go, log, newUserPage, screenshot, signIn } from './harness.mjs';

const [ID, HTTP, RPC] = (process.env.TESSERA_NEW_NODE || '').split(' ');
assert.ok(ID && HTTP && RPC, 'TESSERA_NEW_NODE is required');

const page = await newUserPage();
await signIn(page, 'admin', ADMIN_PASSWORD);
await go(page, '/admin/cluster');
const rows = page.locator('#node-set tbody tr');
await eventually('the three nodes', async () => (await rows.count()) === 3);
const moves = page.locator('#moves');
await eventually('no move to go', async () => (await moves.getAttribute('data-to-go')) === '0');
await a11y(page, 'cluster page with the node set');

log('an add the cluster refuses says why');
await page.locator('#add-node-id').fill('9');
await page.locator('#add-node-http').fill('127.0.0.1:1');
await page.locator('#add-node-rpc').fill('127.0.0.1:2');
await page.getByRole('button', { name: 'Add node' }).click();
await eventually('the refusal', async () => /does not answer/.test(await page.locator('#add-node-error').textContent()));
assert.equal(await rows.count(), 3, 'nothing was added');

log(`node ${ID} added; its replicas move to it`);
await page.locator('#add-node-id').fill(ID);
await page.locator('#add-node-http').fill(HTTP);
await page.locator('#add-node-rpc').fill(RPC);
await page.getByRole('button', { name: 'Add node' }).click();
const added = page.locator(`#node-set tr[data-node="${ID}"]`);
await added.waitFor();
await eventually('the moves to finish', async () => (await moves.getAttribute('data-to-go')) === '0'
  && /^([1-9]\d*) → \1$/.test((await added.locator('td').nth(3).textContent()).trim()), 120_000);
await screenshot(page, 'nodes-added');

log(`node ${ID} removed: its replicas move away, then it leaves`);
page.once('dialog', (d) => d.accept());
await added.getByRole('button', { name: 'Remove' }).click();
await eventually(`node ${ID} to leave`, async () => (await added.count()) === 0, 120_000);
await eventually('the three nodes again', async () => (await rows.count()) === 3
  && (await moves.getAttribute('data-to-go')) === '0');
await screenshot(page, 'nodes-removed');
await finish('nodes');
