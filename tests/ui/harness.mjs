// What the browser tests share: the API from node, chromium with CSP and page-error watches,
// sign-in and navigation, axe-core checks, canvas geometry (image pixels → page coordinates),
// and the cluster the test runs against (nodes killed and started by the Rust harness, asked
// over stdout/stdin: see tests/cluster/ui.rs).
//
// Env: TESSERA_URL (a node), TESSERA_ADMIN_PASSWORD, TESSERA_ARTEFACTS (screenshots; default
// target/ui-artefacts), CHROMIUM.

import { mkdirSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { join, resolve } from 'node:path';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

export const BASE = process.env.TESSERA_URL || 'http://127.0.0.1:8081';
export const ADMIN_PASSWORD = process.env.TESSERA_ADMIN_PASSWORD;
export const ART = resolve(process.env.TESSERA_ARTEFACTS || 'target/ui-artefacts');
export const TIMEOUT = 30_000;
mkdirSync(ART, { recursive: true });
assert.ok(ADMIN_PASSWORD, 'TESSERA_ADMIN_PASSWORD is required');

export const pw = (u) => `${u}-password`;
const t0 = Date.now();
export const log = (...a) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);

// --- the cluster: `@cluster kill 1` / `@cluster start 1` on stdout, answered with one line on
// stdin once done (a started node is ready). Scripts that ask end with process.exit: stdin stays
// open.
let answers = null;
export async function cluster(command) {
  answers ??= createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  console.log(`@cluster ${command}`);
  const { value, done } = await answers.next();
  assert.ok(!done && value === 'ok', `the harness did not do "${command}": ${value}`);
  log(`cluster: ${command} done`);
}

// --- API checks from node (not through the page)
export async function token(user, password) {
  const r = await fetch(`${BASE}/oauth/token`, { method: 'POST', body: new URLSearchParams({ grant_type: 'password', username: user, password }) });
  assert.equal(r.status, 200, `login ${user}`);
  return (await r.json()).access_token;
}
export async function apiGet(tok, path) {
  return apiSend(tok, 'GET', path);
}
/** A JSON request that must succeed; its parsed reply. */
export async function apiSend(tok, method, path, json, headers = {}) {
  const init = { method, headers: { authorization: `Bearer ${tok}`, ...headers } };
  if (json !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(json);
  }
  const r = await fetch(`${BASE}${path}`, init);
  const body = await r.json();
  assert.ok(r.ok, `${method} ${path}: ${r.status} ${JSON.stringify(body)}`);
  return body;
}
/** Polls `check` until it returns a truthy value (deadline, not a fixed sleep). */
export async function eventually(what, check, ms = TIMEOUT) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try { const v = await check(); if (v) return v; } catch (e) { last = e; }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
export const near = (a, b, what) => assert.ok(Math.abs(a - b) <= 1, `${what}: ${a} is not within 1 px of ${b}`);
export function nearPoints(actual, expected, what) {
  assert.equal(actual.length, expected.length, `${what}: ${JSON.stringify(actual)} vs ${JSON.stringify(expected)}`);
  actual.forEach((p, i) => { near(p[0], expected[i][0], `${what}[${i}].x`); near(p[1], expected[i][1], `${what}[${i}].y`); });
}

export const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, args: ['--no-sandbox'] });
// On a failure, a screenshot of every open page before exiting.
process.on('uncaughtException', async (e) => {
  console.error(e);
  let n = 0;
  for (const context of browser.contexts()) {
    for (const page of context.pages()) {
      const file = join(ART, `failure-${++n}.png`);
      await page.screenshot({ path: file }).then(() => console.error(`failure screenshot ${file} (${page.url()})`), () => {});
    }
  }
  await browser.close().catch(() => {});
  process.exit(1);
});
let shot = 0;
export async function screenshot(page, name) {
  const file = join(ART, `${String(++shot).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file });
  log('screenshot', file);
}
export const errors = [];
// Content-Security-Policy: every violation in any page of any context (a `securitypolicyviolation`
// event, reported through a binding that the page's CSP cannot block) and every console error
// that mentions the policy fails the run.
export const cspViolations = [];
export async function watchCsp(context) {
  await context.exposeBinding('__tesseraCspViolation', (_source, v) => {
    cspViolations.push(v);
    console.log('CSP violation:', v);
  });
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__tesseraCspViolation(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'} at ${e.sourceFile}:${e.lineNumber}`);
    });
  });
  context.on('console', (m) => {
    if (/Content.Security.Policy/i.test(m.text())) cspViolations.push(m.text());
  });
}
export async function newUserPage(base = BASE, viewport = { width: 1366, height: 860 }) {
  const context = await browser.newContext({ viewport, acceptDownloads: true, hasTouch: viewport.width < 800 });
  context.setDefaultTimeout(TIMEOUT);
  await watchCsp(context);
  const page = await context.newPage();
  page.on('pageerror', (e) => { errors.push(e.message); console.log('pageerror:', e.message); });
  page.on('console', (m) => { if (m.type() === 'error') console.log('console error:', m.text()); });
  page.base = base;
  return page;
}
export async function signIn(page, user, password) {
  const first = await page.goto(`${page.base}/`);
  // The UI runs under its strict policy (no inline script or style, no framing).
  const policy = first.headers()['content-security-policy'] || '';
  assert.match(policy, /script-src 'self';/, 'the UI is served with a Content-Security-Policy');
  assert.match(policy, /frame-ancestors 'none'/);
  assert.equal(first.headers()['x-frame-options'], 'DENY');
  await page.waitForURL(/\/login/);
  await page.getByLabel('Username').fill(user);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL((u) => !u.pathname.startsWith('/login'));
  await page.getByText(`${user} ·`).waitFor();
}
export async function go(page, path) {
  await page.evaluate((p) => window.tessera.navigate(p), path);
  await page.waitForURL((u) => u.pathname + u.search === path || u.pathname === path.split('?')[0]);
}

// --- accessibility: axe-core's WCAG 2 A/AA rules on a page; serious and critical findings fail.
const AXE = new URL('./node_modules/axe-core/axe.min.js', import.meta.url).pathname;
export const a11yChecked = [];
export async function a11y(page, name) {
  // Through the DevTools protocol: the UI's CSP rightly refuses an injected <script>.
  if (!(await page.evaluate(() => !!window.axe))) {
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Runtime.evaluate', { expression: readFileSync(AXE, 'utf8') });
    await cdp.detach();
  }
  const found = await page.evaluate(async () => {
    const r = await window.axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa'] } });
    return r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', ')}`);
  });
  assert.deepEqual(found, [], `accessibility of ${name}`);
  a11yChecked.push(name);
}

// --- canvas geometry: image pixel → page coordinates, from the view the canvas publishes
export async function view(page) {
  const c = page.locator('#canvas');
  const box = await c.boundingBox();
  const d = await c.evaluate((el) => ({ ...el.dataset }));
  return { left: box.x, top: box.y, scale: Number(d.scale), tx: Number(d.tx), ty: Number(d.ty), sha: d.sha, n: Number(d.n) };
}
export async function at(page, [x, y]) {
  const v = await view(page);
  return [v.left + v.tx + x * v.scale, v.top + v.ty + y * v.scale];
}
export async function clickAt(page, p) {
  const [sx, sy] = await at(page, p);
  await page.mouse.click(sx, sy);
}
export async function dragBetween(page, a, b) {
  const [ax, ay] = await at(page, a);
  const [bx, by] = await at(page, b);
  await page.mouse.move(ax, ay);
  await page.mouse.down();
  await page.mouse.move((ax + bx) / 2, (ay + by) / 2, { steps: 4 });
  await page.mouse.move(bx, by, { steps: 4 });
  await page.mouse.up();
}
/** Waits for the workspace's canvas, failing early with the page's error when it shows one. */
export async function workspace(page) {
  const failed = page.locator('main .error[role="alert"]');
  await page.locator('#canvas[data-sha]').or(failed).first().waitFor();
  if (await failed.count()) throw new Error(`the workspace did not open: ${await failed.first().textContent()}`);
}
/** A page of `user`'s, signed in, on task `task`'s workspace, the task started. */
export async function startedWorkspace(user, task) {
  const page = await newUserPage();
  await signIn(page, user, pw(user));
  await page.goto(`${BASE}/tasks/${task}`);
  await workspace(page);
  await page.getByRole('button', { name: 'Start' }).click();
  await page.locator('#submit').waitFor();
  return page;
}
/** Ends a script: no page error and no CSP violation in any tab, then exits 0. */
export async function finish(name) {
  assert.deepEqual(errors, [], 'no uncaught page errors');
  assert.deepEqual(cspViolations, [], 'no Content-Security-Policy violations');
  await browser.close();
  log(`ok: ${name}`);
  process.exit(0);
}
export async function waitSaved(page) {
  await page.locator('#save-state.saved').waitFor();
}
export async function objectCount(page) {
  return page.locator('#objects li[data-kind]').count();
}
