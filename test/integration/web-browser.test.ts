/// <reference lib="dom" />
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';
import type { Browser, Page } from 'puppeteer-core';
import { ROOT } from '../helpers/fixtures.js';
import { startTestNats, type TestNats } from '../helpers/nats.js';
import { runGraft, spawnGraft, waitFor, type Spawned } from '../helpers/process.js';

/*
 * The report and the try-it page in a real browser: Debian's Chromium, driven by puppeteer-core.
 * The model is trained on the shipped sample photos with the embedded MobileNetV2 on a real cluster.
 */

const CHROMIUM = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].find((p) => p && existsSync(p));
const SAMPLES = join(ROOT, 'packages', 'cli', 'samples');
/** Screenshots the test keeps (the README's come from here). */
const ARTIFACTS = process.env.GRAFT_TEST_ARTIFACTS ?? join(ROOT, 'test', 'artifacts');

type Top = { label: string; probability: number }[];

describe(
  'report.html and the try-it page in Chromium',
  { skip: CHROMIUM ? false : 'no Chromium found (apt-get install chromium, or set CHROMIUM_PATH): browser tests skipped' },
  () => {
    let nats: TestNats;
    let work: string;
    let modelDir: string;
    let browser: Browser;
    let jobId: string;
    const procs: Spawned[] = [];

    before(async () => {
      nats = await startTestNats();
      work = await mkdtemp(join(tmpdir(), 'graft-browser-'));
      await mkdir(ARTIFACTS, { recursive: true });
      const env = { GRAFT_HOME: work };
      procs.push(spawnGraft(['coordinator', '--nats', nats.url], env), spawnGraft(['worker', '--nats', nats.url, '--worker-id', 'w0'], env));
      modelDir = join(work, 'model');
      const train = await runGraft(
        [
          'train',
          join(SAMPLES, 'clothing'),
          '--nats',
          nats.url,
          '--out',
          modelDir,
          '--backbone',
          'mobilenet_v2_035',
          '--validation-percent',
          '15',
          '--test-percent',
          '20',
        ],
        env,
      );
      assert.equal(train.code, 0, train.output);
      jobId = /job (j\w+):/.exec(train.output)![1];
      assert.match(train.output, /browser bundle: .*layers-model/);
      const { default: puppeteer } = await import('puppeteer-core');
      browser = await puppeteer.launch({
        executablePath: CHROMIUM,
        headless: true,
        args: [
          '--no-sandbox',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
          '--disable-dev-shm-usage',
          '--allow-file-access-from-files',
        ],
      });
    });

    after(async () => {
      await browser?.close();
      for (const p of procs) await p.stop();
      await nats?.stop();
      await rm(work, { recursive: true, force: true });
    });

    /** A page that records console errors, uncaught exceptions and any request outside `allowed`. */
    async function watchedPage(allowed: (url: string) => boolean) {
      const page = await browser.newPage();
      await page.setViewport({ width: 1280, height: 900 });
      const errors: string[] = [];
      const outside: string[] = [];
      page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
      page.on('pageerror', (e) => errors.push(String(e)));
      await page.setRequestInterception(true);
      page.on('request', (r) => {
        if (allowed(r.url())) return void r.continue();
        outside.push(r.url());
        void r.abort();
      });
      return { page, errors, outside };
    }

    async function uploadAndRead(page: Page, file: string, nth: number): Promise<Top> {
      const input = await page.$('input#file');
      await input!.uploadFile(file);
      await page.waitForFunction((n) => document.body.dataset.classified === String(n), { timeout: 60_000 }, nth);
      return page.$$eval('#predictions li', (lis) =>
        lis.map((li) => ({ label: (li as HTMLElement).dataset.label!, probability: Number((li as HTMLElement).dataset.probability) })),
      );
    }

    async function classifyCli(file: string): Promise<Top> {
      const r = await runGraft(['classify', modelDir, file, '--json', '--top', '5']);
      assert.equal(r.code, 0, r.output);
      return JSON.parse(r.output.trim().split('\n').at(-1)!)[0].predictions as Top;
    }

    it('report.html opened from a file, offline, draws the confusion matrix, the per-class chart and the curves, with no errors', async () => {
      const html = await readFile(join(modelDir, 'report.html'), 'utf8');
      const classes = JSON.parse(await readFile(join(modelDir, 'graft.json'), 'utf8')).classes as string[];
      const { page, errors, outside } = await watchedPage((u) => u.startsWith('file:') || u.startsWith('data:'));
      await page.setOfflineMode(true);
      await page.goto(pathToFileURL(join(modelDir, 'report.html')).href, { waitUntil: 'load' });
      await page.waitForSelector('body[data-rendered="true"]');
      const C = classes.length;
      assert.equal(await page.$$eval('#confusion-matrix rect.cell', (r) => r.length), C * C, 'a cell per (actual, predicted) pair');
      assert.equal(await page.$$eval('#confusion-matrix .row-label', (t) => t.length), C, 'class names on the rows');
      const diagonal = await page.$$eval('#confusion-matrix rect.cell', (cells) =>
        cells.filter((c) => c.getAttribute('data-actual') === c.getAttribute('data-predicted')).reduce((a, c) => a + Number(c.getAttribute('data-count')), 0),
      );
      const report = JSON.parse(await readFile(join(modelDir, 'report.json'), 'utf8'));
      assert.equal(diagonal, Math.round(report.top1 * report.images), 'the diagonal holds the correct test images');
      // Sorting: worst class first.
      await page.select('#matrix-order', 'accuracy');
      const firstRow = await page.$eval('#confusion-matrix .row-label', (t) => t.textContent);
      const worst = [...report.perClass].sort(
        (a: { accuracy: number; label: string }, b: { accuracy: number; label: string }) => a.accuracy - b.accuracy || a.label.localeCompare(b.label),
      )[0].label;
      assert.equal(firstRow, worst);
      // Hover shows a count.
      const cell = await page.$('#confusion-matrix rect.cell');
      await cell!.hover();
      assert.match(await page.$eval('#matrix-tip', (t) => t.textContent ?? ''), /^actual .+, predicted .+: \d+ of \d+/);
      assert.equal(await page.$$eval('#per-class-chart .class-row', (r) => r.length), C);
      assert.ok(
        (await page.$$eval('#per-class-chart rect.bar', (r) => r.map((b) => Number(b.getAttribute('width'))))).some((w) => w > 0),
        'bars have length',
      );
      for (const id of ['loss-curve', 'accuracy-curve']) {
        const paths = await page.$$eval(`#${id} path.series`, (p) => p.map((x) => x.getAttribute('d') ?? ''));
        assert.equal(paths.length, 2, `${id}: train and validation`);
        assert.ok(
          paths.every((d) => d.split('L').length >= 2),
          `${id}: lines over the epochs`,
        );
      }
      if (report.misclassified.length > 0) {
        const thumbs = await page.$$eval('#pairs .thumb img', (imgs) => imgs.map((i) => (i as HTMLImageElement).naturalWidth));
        assert.ok(thumbs.length > 0 && thumbs.every((w) => w > 0), 'thumbnails of misclassified photos load from the file itself');
        // A click on a confused cell shows that pair's photos.
        const m = report.misclassified.at(-1) as { actual: string; predicted: string };
        await page.$$eval(
          '#confusion-matrix rect.cell',
          (cells, a, p) =>
            cells
              .find((c) => c.getAttribute('data-actual') === a && c.getAttribute('data-predicted') === p)!
              .dispatchEvent(new MouseEvent('click', { bubbles: true })),
          m.actual,
          m.predicted,
        );
        const shown = await page.$eval('.pair.selected', (d) => [d.getAttribute('data-actual'), d.getAttribute('data-predicted'), getComputedStyle(d).display]);
        assert.deepEqual(shown.slice(0, 2), [m.actual, m.predicted]);
        assert.notEqual(shown[2], 'none', 'the pair is visible');
      }
      assert.ok(!/(src|href)\s*=\s*["']?(https?:)?\/\/|url\(/i.test(html), 'nothing in the file points outside it');
      assert.deepEqual(outside, [], 'no request left the file');
      assert.deepEqual(errors, [], 'no console errors');
      await page.screenshot({ path: join(ARTIFACTS, 'report.png'), fullPage: true });
      await page.close();
    });

    it('the try-it page from graft serve gives the top-5 of graft classify (within 1e-3) for a held-out photo', async () => {
      // A held-out photo at the model's input size: the page draws it unscaled, so the model sees the pixels graft classify sees.
      const exact = join(work, 'shoes-224.png');
      await writeFile(
        exact,
        await sharp(join(SAMPLES, 'held-out', 'shoes.jpg'))
          .resize(224, 224, { fit: 'fill' })
          .png()
          .toBuffer(),
      );
      const serve = spawnGraft(['serve', modelDir, '--port', '0']);
      procs.push(serve);
      const url = await waitFor(async () => /http:\/\/127\.0\.0\.1:\d+\/web\/index\.html/.exec(serve.output())?.[0], 20_000, 'graft serve prints its address');
      const origin = new URL(url).origin;
      const { page, errors, outside } = await watchedPage((u) => u.startsWith(origin) || u.startsWith('blob:') || u.startsWith('data:'));
      await page.goto(url, { waitUntil: 'load' });
      await page.waitForFunction(() => document.body.dataset.ready === 'true', { timeout: 60_000 });

      const inPage = await uploadAndRead(page, exact, 1);
      const cli = await classifyCli(exact);
      assert.equal(inPage.length, 5);
      assert.deepEqual(
        inPage.map((p) => p.label),
        cli.map((p) => p.label),
        'same top-5, same order',
      );
      for (let i = 0; i < 5; i++)
        assert.ok(
          Math.abs(inPage[i].probability - cli[i].probability) < 1e-3,
          `${cli[i].label}: page ${inPage[i].probability} vs classify ${cli[i].probability}`,
        );
      assert.equal(await page.$eval('#predictions li .label', (e) => e.textContent), cli[0].label, 'the top label is shown');

      // A full-size photo: the page scales it with the browser's resampling, graft with sharp's; the answer is the same.
      const photo = join(SAMPLES, 'held-out', 'shoes.jpg');
      const full = await uploadAndRead(page, photo, 2);
      assert.equal(full[0].label, (await classifyCli(photo))[0].label);
      await page.screenshot({ path: join(ARTIFACTS, 'try-it.png') });
      assert.deepEqual(outside, [], 'the page fetched nothing but its own files');
      assert.deepEqual(errors, [], 'no console errors');
      await page.close();
      await serve.stop();
    });

    it('index.html also works opened as a file (the model comes from model.js)', async () => {
      const exact = join(work, 'shoes-224.png');
      const { page, errors, outside } = await watchedPage((u) => u.startsWith('file:') || u.startsWith('blob:') || u.startsWith('data:'));
      await page.setOfflineMode(true);
      await page.goto(pathToFileURL(join(modelDir, 'web', 'index.html')).href, { waitUntil: 'load' });
      await page.waitForFunction(() => document.body.dataset.ready === 'true', { timeout: 60_000 });
      const top = await uploadAndRead(page, exact, 1);
      assert.deepEqual(
        top.map((p) => p.label),
        (await classifyCli(exact)).map((p) => p.label),
      );
      assert.deepEqual(outside, []);
      assert.deepEqual(errors, []);
      await page.close();
    });

    it('graft report JOB renders the report from the cluster, thumbnails from the image store', async () => {
      const out = join(work, 'again.html');
      const r = await runGraft(['report', jobId, '--nats', nats.url, '--out', out]);
      assert.equal(r.code, 0, r.output);
      const html = await readFile(out, 'utf8');
      assert.match(html, /id="per-class-chart"/);
      const report = JSON.parse(await readFile(join(modelDir, 'report.json'), 'utf8'));
      if (report.misclassified.length > 0) assert.match(html, /<img src="data:image\/jpeg;base64,/);
    });
  },
);
