import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateSampleSet, publishDataset, scanDataset } from '@graft/cli';
import { JobState, STREAMS, freePort, putPrepared, readPrepared, type BusHandles as Bus } from '@graft/protocol/testing';
import { RESIZE_METHOD, decodeImage, initBackend } from '@graft/vision';
import { TestCluster, countsOf } from '../helpers/cluster.js';
import { writeConvModel } from '../helpers/models.js';
import { waitFor } from '../helpers/process.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/*
 * Prepared inputs through the real cluster: the first job at an input size has the worker store
 * each photo's pixels at that size; a later job with another backbone of that size reads them
 * instead of fetching and decoding originals; another size or rule is never read; a damaged copy
 * is made again; a worker killed while preparing leaves only whole copies.
 */

const training = { epochs: 2, validationPercent: 20, testPercent: 20 };

/** How many prepared copies the store holds at one size (by the stream's subject counts). */
async function storedCopies(bus: Bus, size: number, rule = RESIZE_METHOD): Promise<string[]> {
  const filter = `graft.prepared.${rule}.${size}.*`;
  const info = await bus.jsm.streams.info(STREAMS.prepared, { subjects_filter: filter });
  return Object.keys(info.state.subjects ?? {}).map((s) => s.split('.').pop()!);
}

describe('prepared inputs: photos decoded at the input size once, reused by later jobs', () => {
  let c: TestCluster;
  let port: number;
  let data: string;
  let shas: string[];
  const models = new Map<string, string>();

  const metrics = async () => {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const one = (re: RegExp) => Number(re.exec(text)?.[1] ?? 0);
    return {
      reused: one(/^graft_prepared_inputs_total\{outcome="reused"\} (\d+)/m),
      made: one(/^graft_prepared_inputs_total\{outcome="made"\} (\d+)/m),
      refused: one(/^graft_prepared_inputs_total\{outcome="refused"\} (\d+)/m),
      fetchedBytes: one(/^graft_image_fetched_bytes_total (\d+)/m),
    };
  };
  const model = async (name: string, size: number, filters: number) => {
    const dir = join(c.work, name);
    await mkdir(dir, { recursive: true });
    models.set(name, await writeConvModel(dir, { size, filters, layers: 1 }));
    return models.get(name)!;
  };
  /** Runs a job; its prepared inputs once `expected` of them are counted (copies are stored in the background, maybe after the job ends). */
  const run = async (backbone: string, expected: { reused: number; made: number }) => {
    const before = await metrics();
    const p = await publishDataset(c.bus, data, { progress: false, backbone, training });
    const s = await c.waitForJob(p.jobId, 120_000);
    assert.equal(s.state, JobState.JOB_STATE_DONE, c.logs());
    assert.deepEqual(countsOf(s), { total: shas.length, cached: 0, extracted: shas.length, failed: 0 });
    const delta = async () => {
      const now = await metrics();
      return { reused: now.reused - before.reused, made: now.made - before.made, fetchedBytes: now.fetchedBytes - before.fetchedBytes };
    };
    await waitFor(async () => ((await delta()).made >= expected.made ? true : undefined), 30_000, 'the prepared inputs stored').catch(() => undefined);
    const d = await delta();
    assert.deepEqual({ reused: d.reused, made: d.made }, expected);
    return d;
  };

  before(async () => {
    await initBackend();
    port = await freePort();
    c = new TestCluster();
    await c.start();
    c.startWorker(['--metrics-port', String(port)]);
    // Photos larger than their copies (640 px JPEGs of about 10 KB against copies of 2 to 5 KB): a copy is kept only where it pays.
    data = await generateSampleSet(join(c.work, 'shapes'), 8, 5, ['circle', 'square', 'triangle'], 640);
    shas = (await scanDataset(data)).images.map((i) => i.sha256);
    await waitFor(() => metrics().catch(() => undefined), 60_000, "the worker's metrics");
  });
  after(() => c.stop());

  it('the first job at a size makes one copy per photo, exactly the pixels of the original; another backbone at that size reads them and fetches no original', async () => {
    await run(await model('a32', 32, 8), { reused: 0, made: shas.length });
    assert.deepEqual((await storedCopies(c.bus, 32)).sort(), [...shas].sort());
    // The copies are the rule's pixels of the originals, byte for byte: a vector from them is the vector from the original.
    const scan = await scanDataset(data);
    for (const img of scan.images) {
      const r = await readPrepared(c.bus, RESIZE_METHOD, 32, img.sha256);
      assert.ok(r.ok, img.path);
      assert.ok(
        Buffer.from(r.pixels).equals(Buffer.from(await decodeImage(new Uint8Array(await readFile(join(data, img.path))), 32))),
        `${img.path}: prepared pixels equal the original's`,
      );
    }
    const second = await run(await model('b32', 32, 4), { reused: shas.length, made: 0 });
    assert.equal(second.fetchedBytes, shas.length * 32 * 32 * 3, 'only prepared pixels were read: no original');
  });

  it('another input size makes its own copies; a copy of another rule is never read; a damaged copy is made again', async () => {
    await run(await model('c36', 36, 8), { reused: 0, made: shas.length }); // size 36 does not read size 32
    // Copies at 24 px made by an older rule: a job at 24 px does not read them.
    const px = new Uint8Array(24 * 24 * 3).fill(7);
    for (const sha of shas) await putPrepared(c.bus, 'older-rule', 24, sha, px);
    await run(await model('d24', 24, 8), { reused: 0, made: shas.length }); // another rule is another copy
    // One copy at 32 px overwritten with garbage: refused, made again from the original.
    await c.bus.js.publish(`graft.prepared.${RESIZE_METHOD}.32.${shas[0]}`, new Uint8Array([1, 2, 3]));
    const refusedBefore = (await metrics()).refused;
    await run(await model('e32', 32, 2), { reused: shas.length - 1, made: 1 });
    assert.equal((await metrics()).refused - refusedBefore, 1, 'the damaged copy is counted');
    assert.ok((await readPrepared(c.bus, RESIZE_METHOD, 32, shas[0])).ok, 'the damaged copy was replaced');
  });

  it('a photo smaller than its copy gets none: reading the copy would cost what decoding it does', async () => {
    const small = await generateSampleSet(join(c.work, 'small'), 4, 3, ['circle', 'square']); // 160 px JPEGs of about 2 KB
    const n = (await scanDataset(small)).images.length;
    const p = await publishDataset(c.bus, small, { progress: false, backbone: await model('s48', 48, 4), training });
    assert.equal((await c.waitForJob(p.jobId, 120_000)).state, JobState.JOB_STATE_DONE, c.logs());
    const copies = await storedCopies(c.bus, 48);
    const smallShas = (await scanDataset(small)).images.map((i) => i.sha256);
    assert.equal(copies.filter((s) => smallShas.includes(s)).length, 0, `none of the ${n} small photos has a 6.9 KB copy`);
  });

  it('a worker with --no-prepared-inputs reads and makes none', async () => {
    const p2 = await freePort();
    c.workers[0].child.kill('SIGTERM');
    await c.workers[0].exited;
    c.startWorker(['--metrics-port', String(p2), '--no-prepared-inputs']);
    const before = await storedCopies(c.bus, 28);
    const job = await publishDataset(c.bus, data, { progress: false, backbone: await model('f28', 28, 8), training });
    assert.equal((await c.waitForJob(job.jobId, 120_000)).state, JobState.JOB_STATE_DONE, c.logs());
    assert.deepEqual({ before: before.length, after: (await storedCopies(c.bus, 28)).length }, { before: 0, after: 0 });
    const text = await (await fetch(`http://127.0.0.1:${p2}/metrics`)).text();
    assert.doesNotMatch(text, /^graft_prepared_inputs_total\{outcome="(reused|made)"\} [1-9]/m);
    c.workers[1].child.kill('SIGTERM');
    await c.workers[1].exited;
  });

  it('a worker killed while preparing leaves whole copies only; the job finishes and the next job reuses them all', async () => {
    const big = await generateSampleSet(join(c.work, 'many'), 40, 9, ['circle', 'square', 'triangle'], 640);
    const all = (await scanDataset(big)).images.map((i) => i.sha256);
    const p3 = await freePort();
    const w = c.startWorker(['--metrics-port', String(p3)]);
    const backbone = await model('g40', 40, 48);
    const job = await publishDataset(c.bus, big, { progress: false, backbone, training });
    // Killed as soon as some copies are stored and the job still has photos to go.
    await waitFor(async () => ((await storedCopies(c.bus, 40)).length > 0 ? true : undefined), 120_000, 'the first prepared copies');
    w.child.kill('SIGKILL');
    await w.exited;
    const partial = await storedCopies(c.bus, 40);
    assert.ok(partial.length < all.length, `killed mid-prepare (${partial.length} of ${all.length} stored)`);
    for (const sha of partial) assert.ok((await readPrepared(c.bus, RESIZE_METHOD, 40, sha)).ok, 'every stored copy is whole');
    const p4 = await freePort();
    c.startWorker(['--metrics-port', String(p4)]);
    const s = await c.waitForJob(job.jobId, 180_000);
    assert.equal(s.state, JobState.JOB_STATE_DONE, c.logs());
    assert.equal(s.counts!.failed, 0);
    // A copy being written when the worker died is simply not there: the next job at 40 px reads
    // every copy that is and makes the rest, and then every photo has one.
    const counted = async () => {
      const text = await (await fetch(`http://127.0.0.1:${p4}/metrics`)).text();
      const one = (o: string) => Number(new RegExp(`^graft_prepared_inputs_total\\{outcome="${o}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
      return { reused: one('reused'), made: one('made') };
    };
    await waitFor(
      async () => {
        const n = (await storedCopies(c.bus, 40)).length;
        await sleep(1000);
        return n === (await storedCopies(c.bus, 40)).length ? true : undefined;
      },
      60_000,
      'the background writes to settle',
    );
    const stored = await storedCopies(c.bus, 40);
    assert.ok(stored.length >= partial.length);
    const before = await counted();
    const next = await publishDataset(c.bus, big, { progress: false, backbone: await model('h40', 40, 4), training });
    assert.equal((await c.waitForJob(next.jobId, 180_000)).state, JobState.JOB_STATE_DONE, c.logs());
    await waitFor(async () => ((await storedCopies(c.bus, 40)).length === all.length ? true : undefined), 30_000, 'every copy stored').catch(() => undefined);
    const after = await counted();
    assert.deepEqual({ reused: after.reused - before.reused, made: after.made - before.made }, { reused: stored.length, made: all.length - stored.length });
    assert.deepEqual((await storedCopies(c.bus, 40)).sort(), [...all].sort(), 'every photo prepared in the end');
  });
});
