// Development helper: signs in and screenshots a page. node shot.mjs BASE USER PASS PATH OUT.png
import { chromium } from 'playwright-core';
const [base, user, pass, path, out] = process.argv.slice(2);
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true });
const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
page.on('console', (m) => console.log('console:', m.type(), m.text()));
page.on('pageerror', (e) => console.log('pageerror:', e.message));
await page.goto(`${base}/login`);
await page.getByLabel('Username').fill(user);
await page.getByLabel('Password').fill(pass);
await page.getByRole('button', { name: 'Sign in' }).click();
await page.waitForURL((u) => !u.pathname.startsWith('/login'));
await page.goto(`${base}${path}`);
await page.waitForTimeout(1500);
await page.screenshot({ path: out });
await browser.close();
