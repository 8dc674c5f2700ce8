// End-to-end tests of the web console: a fresh Arctern (started by harness.py, which also
// makes state with real clients: pika, confluent-kafka), Debian's Chromium driven headless by
// playwright-core, and assertions on what a user sees. Screenshots go to
// target/console-artifacts/ (CONSOLE_ARTIFACTS overrides).
//
// Environment: ARCTERN_BIN (the broker binary, read by harness.py), PYTHON (a Python with
// pika and confluent-kafka; default: the repo's .venv), CHROMIUM (default /usr/bin/chromium).

import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');
const PYTHON = process.env.PYTHON || path.join(REPO, '.venv', 'bin', 'python');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = process.env.CONSOLE_ARTIFACTS || path.join(REPO, 'target', 'console-artifacts');
const TIMEOUT = 20_000;
// CONSOLE_TARGET=rabbitmq: the same page against RabbitMQ 3.10's own management API (through
// harness.py's proxy); the Kafka parts are skipped.
const RABBIT = process.env.CONSOLE_TARGET === 'rabbitmq';

/** harness.py: one JSON line per command, one JSON line per answer. */
class Harness {
  async start() {
    this.proc = spawn(PYTHON, [path.join(HERE, 'harness.py')], {
      stdio: ['pipe', 'pipe', 'inherit'],
      env: { ...process.env, CONSOLE_ARTIFACTS: ARTIFACTS },
    });
    this.lines = readline.createInterface({ input: this.proc.stdout })[Symbol.asyncIterator]();
    this.exited = new Promise((resolve) => this.proc.on('exit', resolve));
    this.info = await this.next();
    return this.info;
  }

  async next() {
    const { value, done } = await this.lines.next();
    if (done) throw new Error('harness.py exited');
    return JSON.parse(value);
  }

  async send(cmd, args = {}) {
    this.proc.stdin.write(JSON.stringify({ cmd, ...args }) + '\n');
    const out = await this.next();
    if (out.error) throw new Error(`harness ${cmd}: ${out.error}\n${out.trace || ''}`);
    return out;
  }

  async stop() {
    if (!this.proc) return;
    this.proc.stdin.end();
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 30_000);
    await this.exited;
    clearTimeout(timer);
  }
}

const harness = new Harness();
let browser, page, base, profile;
const pageErrors = [];

async function shot(name) {
  const prefix = RABBIT ? 'rabbitmq-' : '';
  await page.screenshot({ path: path.join(ARTIFACTS, `${prefix}${name}.png`), fullPage: true });
}

/** Polls `fn` until it returns a truthy value. */
async function eventually(fn, what, timeout = TIMEOUT) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${last})`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function login(user, password) {
  await page.fill('#login-user', user);
  await page.fill('#login-password', password);
  await page.click('#login-form button[type=submit]');
}

async function view(name) {
  await page.click(`nav a[data-view=${name}]`);
  await page.waitForSelector(`nav a.active[data-view=${name}]`);
}

before(async () => {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const info = await harness.start();
  base = info.http;
  profile = fs.mkdtempSync(path.join(os.tmpdir(), 'arctern-console-chromium-'));
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1300, height: 1000 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  page = browser.pages()[0] || (await browser.newPage());
  page.setDefaultTimeout(TIMEOUT);
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  // A 1 s refresh keeps the test short; the default is 5 s.
  await page.goto(`${base}/?interval=1000`);
});

afterEach(async (t) => {
  // What the page showed when a test ended (the failing state, if it failed).
  if (page) await shot(`end-${t.name.replace(/[^a-z0-9]+/gi, '-').slice(0, 60)}`).catch(() => {});
});

after(async () => {
  if (browser) await browser.close();
  await harness.stop();
  if (profile) fs.rmSync(profile, { recursive: true, force: true });
});

test('a wrong password shows an error and the login form again', async () => {
  await page.waitForSelector('#login-form');
  await login('guest', 'not-the-password');
  const err = await page.waitForSelector('#login-error:not([hidden])');
  assert.match(await err.textContent(), /Login failed/);
  assert.equal(await page.isVisible('#app'), false);
  await shot('01-login-failed');
});

test('logging in shows the overview: node, Kafka controller, no alarms, charts', async () => {
  await login('guest', 'guest');
  await page.waitForSelector('#stat-connections');
  assert.match(await page.textContent('#whoami'), /guest/);
  // Nodes table has this node, the Kafka cluster names a controller.
  await page.waitForSelector('section:has(h2:text("Nodes")) tbody tr[data-node]');
  if (!RABBIT) await page.waitForSelector('#kafka-controller');
  await page.waitForSelector('#alarms-ok');
  // After a few samples the charts have lines.
  await eventually(async () => (await page.$$('#chart-conns polyline')).length > 0, 'a chart line');
  // sessionStorage keeps the login over a reload.
  await page.reload();
  await page.waitForSelector('#stat-connections');
  await shot('02-overview');
});

test('a queue created by pika appears with its ready count; purge from the UI empties it', async () => {
  const r = await harness.send('publish', { queue: 'console-orders', count: 7 });
  assert.equal(r.message_count, 7);
  await view('amqp');
  const row = page.locator('#queues tr[data-queue="console-orders"]');
  await eventually(async () => (await row.locator('.ready').textContent()) === '7', 'ready = 7');
  await shot('03-queue');

  // Cancel first: nothing happens.
  await row.locator('button', { hasText: 'Purge' }).click();
  await page.waitForSelector('dialog#confirm[open]');
  assert.match(await page.textContent('#confirm-text'), /console-orders/);
  await shot('04-purge-confirm');
  await page.click('#confirm-cancel');
  await page.waitForSelector('dialog#confirm', { state: 'hidden' });
  assert.equal((await harness.send('depth', { queue: 'console-orders' })).message_count, 7);

  await row.locator('button', { hasText: 'Purge' }).click();
  await page.click('#confirm-ok');
  await eventually(async () => (await row.locator('.ready').textContent()) === '0', 'ready = 0 after purge');
  // The client sees it too.
  assert.equal((await harness.send('depth', { queue: 'console-orders' })).message_count, 0);
  assert.equal(await page.isVisible('#notice.error'), false);
  await shot('05-purged');
});

test('a connection closed from the UI disappears and the client sees it closed', async () => {
  await harness.send('open_conn', { name: 'console-victim' });
  await view('amqp');
  const row = page.locator('#connections tr[data-connection]', { hasText: 'console-victim' });
  await row.waitFor();
  await shot('06-connection');
  await row.locator('button', { hasText: 'Close' }).click();
  await page.click('#confirm-ok');
  // The client reads the broker's connection.close (and answers close-ok, after which the
  // broker forgets the connection: RabbitMQ keeps it listed until then).
  const closed = await eventually(async () => {
    const s = await harness.send('conn_closed', { name: 'console-victim' });
    return s.closed && s;
  }, 'the client to see its connection closed');
  assert.ok(closed.closed);
  await eventually(async () => (await row.count()) === 0, 'the connection row to go');
  assert.equal(await page.isVisible('#notice.error'), false);
  await shot('07-connection-closed');
});

test('a consumer group lag figure follows the consumer\'s commits', { skip: RABBIT && 'Kafka: Arctern only' }, async () => {
  // One partition, so the lag is plain arithmetic: 10 produced - 4 committed = 6 (a
  // partition without a committed offset has no lag figure in Kafka's tools).
  await harness.send('produce', { topic: 'console-events', partitions: 1, count: 10 });
  await harness.send('consume_commit', { group: 'console-group', topic: 'console-events', count: 4 });
  await view('kafka');
  const topicRow = page.locator('#topics tr[data-topic="console-events"]');
  await topicRow.waitFor();
  await topicRow.locator('button').click();
  await eventually(async () => (await page.locator('#partitions tbody tr[data-partition]').count()) === 1, 'the partition row');
  await eventually(async () => (await page.locator('#partitions tr[data-partition="0"] td:nth-child(7)').textContent()) === '10', 'high watermark 10');
  // A single node: nothing is under-replicated.
  assert.equal(await page.locator('#partitions tr[data-under-replicated="true"]').count(), 0);

  const groupRow = page.locator('#groups tr[data-group="console-group"]');
  await eventually(async () => (await groupRow.locator('.lag').textContent()) === '6', 'lag = 6');
  await groupRow.locator('button').click();
  const offsetRow = page.locator('#group-offsets tr[data-topic="console-events"][data-partition="0"]');
  await offsetRow.waitFor();
  await eventually(async () => (await offsetRow.locator('td').allTextContents()).join('|') === 'console-events|0|4|10|6',
    'offsets row: committed 4, log end 10, lag 6');
  await shot('08-group-lag-6');

  await harness.send('consume_commit', { group: 'console-group', topic: 'console-events', count: 6 });
  await eventually(async () => (await groupRow.locator('.lag').textContent()) === '0', 'lag = 0 after the commit');
  await eventually(async () => (await page.$$('#chart-lag polyline')).length > 0, 'a lag chart line');
  await shot('09-group-lag-0');
});

test('credentials refused later (401) bring the login form back', async () => {
  // As if the password changed while the tab was open.
  await page.evaluate(() => sessionStorage.setItem('arctern.console.auth',
    JSON.stringify({ user: 'guest', token: btoa('guest:changed-meanwhile') })));
  await page.reload();
  const err = await page.waitForSelector('#login-error:not([hidden])');
  assert.match(await err.textContent(), /refused/);
  assert.equal(await page.isVisible('#app'), false);
  await login('guest', 'guest');
  await page.waitForSelector('#whoami:text("guest")');
});

test('logging out forgets the credentials', async () => {
  await page.click('#logout');
  await page.waitForSelector('#login-form');
  await page.reload();
  await page.waitForSelector('#login-form');
  assert.equal(await page.isVisible('#app'), false);
  assert.deepEqual(pageErrors, []);
});

test('an under-replicated partition is highlighted (3-node cluster, one node killed)', { skip: RABBIT && 'Kafka: Arctern only' }, async () => {
  const { http } = await harness.send('degraded_cluster', { topic: 'console-degraded' });
  // Another origin: its own sessionStorage, so log in again.
  const p2 = await browser.newPage();
  p2.setDefaultTimeout(TIMEOUT);
  try {
    await p2.goto(`${http}/?interval=1000#/kafka`);
    await p2.fill('#login-user', 'guest');
    await p2.fill('#login-password', 'guest');
    await p2.click('#login-form button[type=submit]');
    const topicRow = p2.locator('#topics tr[data-topic="console-degraded"]');
    await eventually(async () => /\bwarn\b/.test((await topicRow.getAttribute('class')) || ''), 'the topic row highlighted');
    await topicRow.locator('button').click();
    const part = p2.locator('#partitions tr[data-partition="0"]');
    await eventually(async () => (await part.getAttribute('data-under-replicated')) === 'true', 'partition 0 under-replicated');
    assert.match((await part.getAttribute('class')) || '', /\bwarn\b/);
    await p2.screenshot({ path: path.join(ARTIFACTS, '10-under-replicated.png'), fullPage: true });
  } finally {
    await p2.close();
  }
});
