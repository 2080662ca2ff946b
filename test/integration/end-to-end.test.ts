import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { exportModel, followJob, generateSampleSet, publishDataset, sampleImage } from '@graft/cli';
import { loadClassifier } from '@graft/head';
import { JobState, codecs, freePort, openBus, vectorKey, type BusHandles as Bus, type JobStatus } from '@graft/protocol/testing';
import { initBackend } from '@graft/vision';
import sharp from 'sharp';
import { startTestNats, type TestNats } from '../helpers/nats.js';
import { countsOf } from '../helpers/cluster.js';
import { runGraft, spawnGraft, type Spawned } from '../helpers/process.js';
import { CLI } from '../helpers/fixtures.js';
import { spawnSync } from 'node:child_process';

const CLASSES = ['circle', 'square', 'triangle'] as const;
const PER_CLASS = 14;

/** Sum of graft_backbone_calls_total over the workers' /metrics. */
async function backboneCalls(ports: number[]): Promise<number> {
  let sum = 0;
  for (const p of ports) {
    const text = await (await fetch(`http://127.0.0.1:${p}/metrics`)).text();
    const m = /^graft_backbone_calls_total (\d+)/m.exec(text);
    assert.ok(m, `worker on ${p} exposes graft_backbone_calls_total`);
    sum += Number(m[1]);
  }
  return sum;
}

describe('graft end to end - publish, extract on two workers, train, export, classify', () => {
  let nats: TestNats;
  let work: string;
  let dataset: string;
  let bus: Bus;
  const procs: Spawned[] = [];
  const metricsPorts: number[] = [];
  let first: JobStatus;

  before(async () => {
    nats = await startTestNats();
    work = await mkdtemp(join(tmpdir(), 'graft-e2e-'));
    dataset = await generateSampleSet(join(work, 'shapes'), PER_CLASS, 3, CLASSES);
    // Bad input beside good: a corrupt JPEG, an empty file, text named .jpg, a grayscale PNG, a non-image.
    const jpg = await sampleImage('circle', 42);
    const corrupt = Buffer.from(jpg);
    corrupt.fill(0x5a, 200, corrupt.length);
    await writeFile(join(dataset, 'circle', 'corrupt.jpg'), corrupt.subarray(0, corrupt.length - 50));
    await writeFile(join(dataset, 'circle', 'empty.jpg'), Buffer.alloc(0));
    await writeFile(join(dataset, 'square', 'notes.jpg'), 'these are my notes, not a photo\n');
    await writeFile(
      join(dataset, 'triangle', 'gray.png'),
      await sharp(await sampleImage('triangle', 43))
        .grayscale()
        .png()
        .toBuffer(),
    );
    await writeFile(join(dataset, 'square', 'readme.txt'), 'not an image');

    const env = { GRAFT_HOME: work, GRAFT_LOG_LEVEL: 'info' };
    procs.push(spawnGraft(['coordinator', '--nats', nats.url], env));
    for (let i = 0; i < 2; i++) {
      const port = await freePort();
      metricsPorts.push(port);
      procs.push(spawnGraft(['worker', '--nats', nats.url, '--worker-id', `w${i}`, '--metrics-port', String(port)], env));
    }
    await initBackend();
    bus = await openBus({ servers: nats.url });
  });

  after(async () => {
    await bus?.close();
    const codes = await Promise.all(procs.map((p) => p.stop()));
    if (codes.some((c) => c !== 0)) for (const p of procs) console.error(p.output().slice(-3000));
    await nats?.cleanup();
    await rm(work, { recursive: true, force: true });
    assert.deepEqual(
      codes,
      procs.map(() => 0),
      'every process exits 0 on SIGTERM',
    );
  });

  it('every image ends with exactly one vector or one named error, and the head trains', async () => {
    const p = await publishDataset(bus, dataset, { progress: false, backbone: 'inception_v3_mixed5', training: { validationPercent: 20, testPercent: 25 } });
    assert.deepEqual(
      p.scan.skipped.map((s) => s.path),
      ['square/readme.txt'],
    );
    first = await followJob(bus, p.jobId, { progress: false });
    assert.equal(first.state, JobState.JOB_STATE_DONE, first.error);
    const total = CLASSES.length * PER_CLASS + 4;
    assert.deepEqual(countsOf(first), { total, cached: 0, extracted: total - 3, failed: 3 });
    const failures = new Map(first.failures.map((f) => [f.path, f.message]));
    assert.deepEqual([...failures.keys()].sort(), ['circle/corrupt.jpg', 'circle/empty.jpg', 'square/notes.jpg']);
    assert.match(failures.get('circle/empty.jpg')!, /empty/);
    assert.match(failures.get('square/notes.jpg')!, /not a readable image/);
    assert.equal(first.skipped, 1);

    // One cache entry per distinct image, a 768-d vector for each good one (the grayscale PNG included).
    const byPath = new Map(p.scan.images.map((i) => [i.path, i.sha256]));
    for (const [path, sha] of byPath) {
      const e = await bus.vectors.get(vectorKey(first.backbone!.fingerprint!, sha));
      assert.ok(e && e.length > 0, `cache entry for ${path}`);
      const v = codecs.cachedVector.decode(e.value);
      if (failures.has(path)) assert.ok(v.errorCode, `${path} cached as an error`);
      else assert.equal(v.dim, 768, `${path} has a vector`);
    }
    let keys = 0;
    for await (const _ of await bus.vectors.keys()) keys++;
    assert.equal(keys, new Set(byPath.values()).size);

    assert.ok(first.evaluation!.testImages! >= 5, `test images ${first.evaluation!.testImages}`);
    assert.ok(first.evaluation!.top1! >= 0.6, `test accuracy ${first.evaluation!.top1} is far above chance (0.33)`);
  });

  it('the export classifies a held-out photo without NATS', async () => {
    const out = join(work, 'model');
    await exportModel(bus, first.jobId, out);
    const c = await loadClassifier(out);
    assert.deepEqual(c.card.classes, [...CLASSES]);
    const preds = await c.classify(await sampleImage('square', 777_777), 3);
    c.dispose();
    assert.equal(preds[0].label, 'square', JSON.stringify(preds));
    assert.ok(preds[0].probability > 0.34);
  });

  it('publishing the same folder again runs the backbone zero times', async () => {
    const before = await backboneCalls(metricsPorts);
    assert.ok(before > 0, 'the first job ran the backbone');
    const p = await publishDataset(bus, dataset, { progress: false, backbone: 'inception_v3_mixed5', training: { validationPercent: 20, testPercent: 25 } });
    const s = await followJob(bus, p.jobId, { progress: false });
    assert.equal(s.state, JobState.JOB_STATE_DONE, s.error);
    assert.deepEqual(countsOf(s), { total: first.counts!.total, cached: first.counts!.total! - 3, extracted: 0, failed: 3 });
    assert.equal(await backboneCalls(metricsPorts), before);
    assert.equal(p.uploaded, 0, 'no image uploaded twice');
  });

  it('the CLI draws progress bars on a terminal and plain lines otherwise', async (t) => {
    const args = ['publish', dataset, '--nats', nats.url, '--backbone', 'inception_v3_mixed5', '--follow'];
    const plain = await runGraft(args, { GRAFT_HOME: work });
    assert.equal(plain.code, 0, plain.output);
    assert.ok(!plain.output.includes('\r'), 'no carriage returns when not a terminal');
    assert.match(plain.output, /^uploading: \d+\/\d+$/m);
    assert.match(plain.output, /^extracting: \d+\/\d+/m);
    assert.match(plain.output, /^training: \d+\/\d+/m);
    // A real pseudo-terminal: util-linux's script(1) runs the command on one.
    const script = spawnSync('script', ['--version']);
    if (script.error) return t.skip('script(1) not installed');
    const cmd = ['node', CLI, ...args].map((a) => `'${a}'`).join(' ');
    const tty = spawnSync('script', ['-qfec', cmd, '/dev/null'], { encoding: 'utf8', env: { ...process.env, GRAFT_HOME: work }, timeout: 120_000 });
    assert.equal(tty.status, 0, tty.stdout + tty.stderr);
    assert.match(tty.stdout, /\ruploading \[#+-*\] \d+\/\d+/);
    assert.match(tty.stdout, /\rtraining \[#*-*\] \d+\/\d+/);
  });

  it('graft status lists failed images by name with a reason', async () => {
    const r = await runGraft(['status', first.jobId, '--failed', '--nats', nats.url]);
    assert.equal(r.code, 0, r.output);
    assert.match(r.output, /circle\/corrupt\.jpg: decode_failed: not a readable image/);
    assert.match(r.output, /circle\/empty\.jpg: empty/);
    const j = await runGraft(['status', first.jobId, '--json', '--nats', nats.url]);
    assert.equal(JSON.parse(j.output).state, 'done');
  });
});

describe('graft CLI - usage', () => {
  it('prints help for every command and refuses bad input with a clear message', async () => {
    for (const cmd of ['train', 'sweep', 'publish', 'status', 'export', 'report', 'serve', 'classify', 'inspect', 'up', 'worker', 'coordinator', 'demo']) {
      const r = await runGraft([cmd, '--help']);
      assert.equal(r.code, 0, `${cmd} --help`);
      assert.match(r.output, new RegExp(`graft ${cmd}`));
    }
    const missing = await runGraft(['train', '/no/such/folder']);
    assert.equal(missing.code, 2);
    assert.match(missing.output, /no such folder: \/no\/such\/folder/);
    const bad = await runGraft(['publish', '.', '--vector-dtype', 'int8']);
    assert.equal(bad.code, 2);
    assert.match(bad.output, /--vector-dtype must be float32 or float16/);
  });
});
