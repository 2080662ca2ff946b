import assert from 'node:assert/strict';
import { appendFile, cp, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync } from 'node:fs';
import { isAbsolute, join, relative } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateSampleSet } from '@graft/cli';
import { TestCluster } from '../helpers/cluster.js';
import { freePort } from '@graft/protocol/testing';
import { runGraft, spawnGraft, waitFor } from '../helpers/process.js';

/*
 * graft predict on a real cluster (nats-server, a coordinator, two workers): a folder, a list with
 * a URL, another job's photos; photos already extracted cost no backbone call; answers the same as
 * graft classify's; "unknown" below the threshold; the photos to label next, and training with them
 * added; a killed command and a killed coordinator, then the same command again: every photo once.
 */

const CLASSES = ['circle', 'square', 'stripes'] as const;

/** A CSV's rows as cells (graft's CSV: quoted cells only where a comma or quote needs it). */
function csvRows(text: string): string[][] {
  return text
    .trimEnd()
    .split('\n')
    .slice(1)
    .map((line) => line.match(/("([^"]|"")*"|[^,]*)(,|$)/g)!.map((c) => c.replace(/,$/, '').replace(/^"|"$/g, '').replace(/""/g, '"')))
    .map((cells) => cells.slice(0, 6));
}

async function imagesUnder(dir: string): Promise<string[]> {
  const all = await readdir(dir, { recursive: true, withFileTypes: true });
  return all
    .filter((e) => e.isFile() && e.name.endsWith('.jpg'))
    .map((e) => relative(dir, join(e.parentPath, e.name)))
    .sort();
}

describe('graft predict - a collection classified on the cluster', () => {
  let c: TestCluster;
  let env: NodeJS.ProcessEnv;
  let data: string;
  let model: string;
  let trainJob: string;
  const nats = () => ['--nats', c.url];

  let metricsPort: number;
  before(async () => {
    metricsPort = await freePort();
    c = await new TestCluster(['--metrics-port', String(metricsPort)]).start({ workers: 2 });
    env = { GRAFT_HOME: join(c.work, 'home'), GRAFT_CACHE_DIR: join(c.work, 'models') };
    data = await generateSampleSet(join(c.work, 'labelled'), 12, 3, [...CLASSES], 64);
    model = join(c.work, 'model');
    const tiny = await c.tinyModel();
    const r = await runGraft(['train', data, ...nats(), '--backbone', tiny, '--out', model, '--no-bundle', '--epochs', '60', '--json'], env);
    assert.equal(r.code, 0, r.output);
    trainJob = JSON.parse(r.output.split('\n').find((l) => l.startsWith('{"job"'))!).job.jobId;
  });
  after(async () => {
    await c?.stop();
  });

  it(
    'a folder at any depth: a row per photo, no backbone call for photos already extracted, the answers graft classify gives',
    { timeout: 180_000 },
    async () => {
      const photos = join(c.work, 'photos');
      await cp(data, join(photos, 'from', 'the', 'shoot'), { recursive: true });
      await mkdir(join(photos, 'broken'), { recursive: true });
      await writeFile(join(photos, 'broken', 'cut.jpg'), Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(200, 7)]));
      await writeFile(join(photos, 'notes.txt'), 'not a photo');
      const out = join(c.work, 'answers', 'preds.csv');
      await mkdir(join(c.work, 'answers'));
      const r = await runGraft(['predict', model, photos, ...nats(), '--out', out, '--top', '2', '--json'], env);
      assert.equal(r.code, 0, r.output);
      const summary = JSON.parse(r.output.split('\n').find((l) => l.startsWith('{"job"'))!);
      const expected = await imagesUnder(photos);
      assert.equal(summary.rows, expected.length);
      assert.equal(summary.failed, 1, 'the cut photo has no answer');
      assert.equal(summary.job.counts.extracted ?? 0, 0, 'every photo but the cut one was extracted by the training job: no backbone call');
      const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      assert.match(metrics, new RegExp(`^graft_predictions_total\\{outcome="answered"\\} ${expected.length - 1}$`, 'm'));
      assert.match(metrics, /^graft_predictions_total\{outcome="failed"\} 1$/m);
      const rows = csvRows(await readFile(out, 'utf8'));
      assert.deepEqual(rows.map((x) => x[0]).sort(), expected);
      const cut = rows.find((x) => x[0] === 'broken/cut.jpg')!;
      assert.equal(cut[1], '');
      assert.ok(cut[5].length > 0, 'the row says why it has no answer');
      for (const x of rows.filter((x) => x !== cut)) {
        assert.equal(x[3].split(';').length, 2, 'top 2');
        assert.ok((CLASSES as readonly string[]).includes(x[1]));
        assert.match(x[4], /^[0-9a-f]{16}$/, "the model's fingerprint");
      }
      // The coordinator's head gives what graft classify (the model folder, on this machine) gives.
      for (const path of ['from/the/shoot/circle/circle_000.jpg', 'from/the/shoot/stripes/stripes_005.jpg']) {
        const k = await runGraft(['classify', model, join(photos, path), '--json'], env);
        assert.equal(k.code, 0, k.output);
        const top = JSON.parse(k.output.trim().split('\n').at(-1)!)[0].predictions[0];
        const row = rows.find((x) => x[0] === path)!;
        assert.equal(row[1], top.label, path);
        assert.ok(Math.abs(Number(row[2]) - top.probability) < 1e-4, `${path}: ${row[2]} vs ${top.probability}`);
      }
    },
  );

  it('a list with a URL (a local server), another job\'s photos, and "unknown" below --min-confidence', { timeout: 180_000 }, async () => {
    const photo = await readFile(join(data, 'square', 'square_001.jpg'));
    const server: Server = createServer((req, res) => {
      if (req.url === '/square.jpg') res.writeHead(200, { 'content-type': 'image/jpeg' }).end(photo);
      else res.writeHead(404).end();
    });
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/square.jpg`;
      const list = join(c.work, 'to-classify.csv');
      await writeFile(list, `path\nlabelled/circle/circle_002.jpg\n${url}\n`);
      const out = join(c.work, 'list-answers.jsonl');
      const r = await runGraft(['predict', model, list, ...nats(), '--out', out, '--min-confidence', '0.99', '--allow-private-urls', '--json'], env);
      assert.equal(r.code, 0, r.output);
      const rows = (await readFile(out, 'utf8'))
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      assert.deepEqual(
        rows.map((x) => x.path),
        ['labelled/circle/circle_002.jpg', url],
      );
      for (const x of rows) assert.equal(x.prediction === 'unknown', x.probability < 0.99, JSON.stringify(x));
      const summary = JSON.parse(r.output.split('\n').find((l) => l.startsWith('{"job"'))!);
      assert.equal(summary.unknown + summary.answered, 2);
    } finally {
      server.close();
    }
    const out = join(c.work, 'job-answers.csv');
    const j = await runGraft(['predict', model, trainJob, ...nats(), '--out', out, '--json'], env);
    assert.equal(j.code, 0, j.output);
    const rows = csvRows(await readFile(out, 'utf8'));
    assert.deepEqual(rows.map((x) => x[0]).sort(), await imagesUnder(data));
    assert.equal(JSON.parse(j.output.split('\n').find((l) => l.startsWith('{"job"'))!).job.counts.extracted ?? 0, 0);
  });

  it('--suggest N: N distinct photos to label, the guess prefilled; train --add trains on them with no backbone call', { timeout: 240_000 }, async () => {
    const fresh = await generateSampleSet(join(c.work, 'unlabelled'), 10, 99, [...CLASSES], 64);
    const out = join(c.work, 'suggest', 'preds.csv');
    await mkdir(join(c.work, 'suggest'));
    const r = await runGraft(['predict', model, fresh, ...nats(), '--out', out, '--suggest', '5', '--json'], env);
    assert.equal(r.code, 0, r.output);
    assert.equal(JSON.parse(r.output.split('\n').find((l) => l.startsWith('{"job"'))!).suggested, 5);
    const toLabel = join(c.work, 'suggest', 'to-label.csv');
    const lines = (await readFile(toLabel, 'utf8')).trim().split('\n');
    assert.equal(lines[0], 'path,label,guess,probability,margin');
    const rows = lines.slice(1).map((l) => l.split(','));
    assert.equal(new Set(rows.map((x) => x[0])).size, 5, 'five different photos');
    for (const [path, label, guess] of rows) {
      assert.ok(isAbsolute(path) && existsSync(path), path);
      assert.equal(label, guess);
      assert.ok((CLASSES as readonly string[]).includes(label));
    }
    const t = await runGraft(
      ['train', data, ...nats(), '--add', toLabel, '--backbone', join(c.work, 'tiny-model-4'), '--out', join(c.work, 'model-added'), '--no-bundle', '--json'],
      env,
    );
    assert.equal(t.code, 0, t.output);
    const job = JSON.parse(t.output.split('\n').find((l) => l.startsWith('{"job"'))!).job;
    assert.equal(job.counts.total, 36 + 5);
    assert.equal(job.counts.extracted ?? 0, 0, 'the added photos were extracted by graft predict');
  });

  it('the command and the coordinator killed mid-job: the same command again writes every photo once', { timeout: 300_000 }, async () => {
    const big = await generateSampleSet(join(c.work, 'big'), 400, 7, [...CLASSES], 48);
    const out = join(c.work, 'big-answers.csv');
    const args = ['predict', model, big, ...nats(), '--out', out];
    const first = spawnGraft(args, env);
    await waitFor(async () => /job \S+: extracting/.test(first.output()) || first.child.exitCode !== null, 120_000, 'the prediction job to start');
    first.child.kill('SIGKILL');
    await first.exited;
    c.coordinator!.child.kill('SIGKILL');
    await c.coordinator!.exited;
    c.startCoordinator();
    if (existsSync(out)) await appendFile(out, 'circle/circle_9'); // a row cut by the kill
    const again = await runGraft(args, env);
    assert.equal(again.code, 0, `${again.output}\n${c.logs()}`);
    const paths = csvRows(await readFile(out, 'utf8')).map((x) => x[0]);
    assert.equal(paths.length, 1200, 'no row twice, none missing');
    assert.deepEqual([...paths].sort(), await imagesUnder(big));
    assert.match(again.output, /following the unfinished prediction/, 'the rerun follows the job the killed command published');
  });
});
