import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { generateSampleSet, publishDataset, scanDataset } from '@graft/cli';
import {
  CONSUMERS,
  JobState,
  STREAMS,
  VectorDType,
  codecs,
  decodeVector,
  encodeVector,
  extractorConsumer,
  freePort,
  hasImage,
  imageSubjects,
  manifestSubject,
  readImage,
  readJob,
  resultSubject,
  vectorKey,
  type BusHandles as Bus,
} from '@graft/protocol/testing';
import sharp from 'sharp';
import { TestCluster, countsOf } from '../../helpers/cluster.js';
import { runGraft, waitFor } from '../../helpers/process.js';

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** Waits until a job is extracting, and returns its backbone fingerprint. */
async function extracting(bus: Bus, jobId: string): Promise<string> {
  const s = await waitFor(
    async () => {
      const r = await readJob(bus, jobId);
      return r?.state === JobState.JOB_STATE_EXTRACTING ? r : undefined;
    },
    30_000,
    'extraction to start',
  );
  return s.backbone!.fingerprint!;
}

/** The stored vector of an image, as floats (undefined when not cached). */
async function cachedVector(bus: Bus, fp: string, sha: string): Promise<Float32Array | undefined> {
  const e = await bus.vectors.get(vectorKey(fp, sha));
  if (!e || !e.length) return undefined;
  const v = codecs.cachedVector.decode(e.value);
  return v.errorCode ? undefined : decodeVector(v.vector, v.dim, v.dtype);
}

describe('untrusted input - names, bytes and messages are checked', () => {
  it(
    'a photo stored under its name before its owner uploaded it (other bytes) fails alone, is removed from the store, and the next publish uploads the real one',
    { timeout: 120_000 },
    async () => {
      const c = await new TestCluster(['--task-size', '8']).start({ workers: 0 });
      try {
        const model = await c.tinyModel();
        const data = await generateSampleSet(join(c.work, 'shapes'), 4, 31, ['circle', 'square']);
        const scan = await scanDataset(data);
        // Someone with upload rights writes other bytes under a photo's name before its owner uploads it:
        // the store keeps the first message of each subject, so the owner's upload cannot replace them.
        const [victim, other] = scan.images;
        const otherBytes = await readFile(other.file!);
        await c.bus.js.publish(imageSubjects.chunk(victim.sha256, 0), otherBytes);
        await c.bus.js.publish(
          imageSubjects.record(victim.sha256),
          codecs.storedImage.encode({ size: otherBytes.byteLength, chunks: 1, sha256: Buffer.from(victim.sha256, 'hex') }),
        );
        const p = await publishDataset(c.bus, data, { progress: false, backbone: model, training: { epochs: 2 } });
        const fp = await extracting(c.bus, p.jobId);
        c.startWorker();
        const s = await c.waitForJob(p.jobId, 60_000);
        assert.equal(s.state, JobState.JOB_STATE_DONE, `${s.error}\n${c.logs()}`);
        assert.deepEqual(countsOf(s), { total: 8, cached: 0, extracted: 7, failed: 1 });
        assert.equal(s.failures[0].path, victim.path);
        assert.match(s.failures[0].message, /content does not match its name/);
        assert.equal(await cachedVector(c.bus, fp, victim.sha256), undefined, 'no vector is cached for the swapped image');
        // The coordinator read it corrupt too and removed it: publishing again uploads the real photo.
        await waitFor(async () => !(await hasImage(c.bus, victim.sha256)), 30_000, 'the corrupt photo to be removed');
        const again = await publishDataset(c.bus, data, { progress: false, backbone: model, training: { epochs: 2 } });
        assert.equal(again.uploaded, 1, 'the removed photo is uploaded again');
        assert.ok((await readImage(c.bus, victim.sha256)).ok, 'the store now holds the real photo');
        const t = await c.waitForJob(again.jobId, 60_000);
        assert.deepEqual(countsOf(t), { total: 8, cached: 7, extracted: 1, failed: 0 });
      } finally {
        await c.stop();
      }
    },
  );

  it('one corrupt chunk in the image store fails that image only', { timeout: 120_000 }, async () => {
    const c = await new TestCluster(['--task-size', '8']).start({ workers: 0 });
    try {
      const model = await c.tinyModel();
      const p = await c.publishShapes(4, 33, { classes: ['circle', 'square'], backbone: model, training: { epochs: 2 } });
      await extracting(c.bus, p.jobId);
      const victim = p.scan.images[3];
      // A bit flip on disk, as the worker would see it: the chunk no longer matches the photo's name.
      await c.bus.jsm.streams.purge(STREAMS.images, { filter: imageSubjects.chunk(victim.sha256, 0) });
      await c.bus.js.publish(imageSubjects.chunk(victim.sha256, 0), randomBytes((await readFile(victim.file!)).byteLength));
      c.startWorker();
      const s = await c.waitForJob(p.jobId, 60_000);
      assert.equal(s.state, JobState.JOB_STATE_DONE, `${s.error}\n${c.logs()}`);
      assert.deepEqual(countsOf(s), { total: 8, cached: 0, extracted: 7, failed: 1 });
      assert.equal(s.failures[0].path, victim.path);
      assert.match(s.failures[0].message, /does not match its name/);
    } finally {
      await c.stop();
    }
  });

  it('the coordinator caches only vectors of the dimension and images its tasks asked for', { timeout: 120_000 }, async () => {
    const c = await new TestCluster().start({ workers: 0 });
    try {
      const model = await c.tinyModel();
      const p = await c.publishShapes(3, 34, { classes: ['circle', 'square'], backbone: model, training: { epochs: 2 } });
      const fp = await extracting(c.bus, p.jobId);
      const consumer = await c.bus.js.consumers.get(STREAMS.tasks, extractorConsumer(fp));
      const msg = await consumer.next({ expires: 10_000 });
      const task = codecs.task.decode(msg!.data);
      msg!.nak(); // a real worker will do it properly
      // A forged batch: the wrong dimension for the task's images, and an image nobody asked for.
      const stranger = 'e'.repeat(64);
      const forged = codecs.vectorBatch.encode({
        jobId: task.jobId,
        taskId: task.taskId,
        backboneFingerprint: fp,
        vectors: [...task.imageSha256, stranger].map((sha) => ({
          sha256: sha,
          vector: encodeVector(new Float32Array(7).fill(9), VectorDType.VECTOR_DTYPE_FLOAT32),
          dim: 7,
        })),
      });
      await c.bus.js.publish(resultSubject(task.jobId), forged);
      c.startWorker();
      const s = await c.waitForJob(p.jobId, 60_000);
      assert.equal(s.state, JobState.JOB_STATE_DONE, `${s.error}\n${c.logs()}`);
      assert.deepEqual(countsOf(s), { total: 6, cached: 0, extracted: 6, failed: 0 });
      for (const sha of task.imageSha256) assert.equal((await cachedVector(c.bus, fp, sha))?.length, 3, 'the real 3-d vector, not the forged one');
      assert.equal(await cachedVector(c.bus, fp, stranger), undefined, 'nothing cached for an image no task asked for');
      assert.match(c.coordinator!.output(), /dead-lettered/);
    } finally {
      await c.stop();
    }
  });

  it('a malformed result is dead-lettered once, never redelivered forever', { timeout: 60_000 }, async () => {
    const c = await new TestCluster().start({ workers: 0 });
    try {
      const bad = codecs.vectorBatch.encode({
        jobId: 'j1',
        taskId: 't1',
        backboneFingerprint: '0123456789abcdef',
        vectors: [{ sha256: 'not a hash', vector: new Uint8Array(4), dim: 1 }],
      });
      for (let i = 0; i < 20; i++) await c.bus.js.publish(resultSubject('j1'), bad);
      await waitFor(
        async () => {
          const ci = await c.bus.jsm.consumers.info(STREAMS.results, CONSUMERS.results);
          return ci.num_pending === 0 && ci.num_ack_pending === 0;
        },
        30_000,
        'the results consumer to settle',
      );
      const ci = await c.bus.jsm.consumers.info(STREAMS.results, CONSUMERS.results);
      assert.equal(ci.num_redelivered, 0, 'no malformed batch came back');
      const dl = await c.bus.jsm.streams.info(STREAMS.resultDeadLetters);
      assert.equal(dl.state.messages, 20, "each kept for inspection in the results' dead-letter stream");
    } finally {
      await c.stop();
    }
  });

  it("garbage on a live job's manifest subject is refused, and a coordinator restart resumes the job", { timeout: 120_000 }, async () => {
    const c = await new TestCluster().start({ workers: 0 });
    try {
      const model = await c.tinyModel();
      const p = await c.publishShapes(3, 35, { classes: ['circle', 'square'], backbone: model, training: { epochs: 2 } });
      await extracting(c.bus, p.jobId);
      await assert.rejects(c.bus.js.publish(manifestSubject(p.jobId), Uint8Array.from([0xff, 0x00, 0x13])), /maximum messages per subject/i);
      c.coordinator!.child.kill('SIGKILL');
      await c.coordinator!.exited;
      c.startCoordinator();
      c.startWorker();
      const s = await c.waitForJob(p.jobId, 60_000);
      assert.equal(s.state, JobState.JOB_STATE_DONE, `${s.error}\n${c.logs()}`);
      assert.deepEqual(countsOf(s), { total: 6, cached: 0, extracted: 6, failed: 0 });
    } finally {
      await c.stop();
    }
  });

  it('an image over the byte limit is refused from its size, without downloading it', { timeout: 120_000 }, async () => {
    const c = await new TestCluster().start({ workers: 0 });
    const port = await freePort();
    c.startWorker(['--max-image-bytes', '200000', '--metrics-port', String(port)]);
    try {
      const model = await c.tinyModel();
      const data = await generateSampleSet(join(c.work, 'shapes'), 2, 36, ['circle', 'square']);
      // A 3-5 MB phone-sized photo: noise does not compress.
      const big = await sharp(randomBytes(1800 * 1400 * 3), { raw: { width: 1800, height: 1400, channels: 3 } })
        .jpeg({ quality: 100 })
        .toBuffer();
      assert.ok(big.length > 3_000_000, `${big.length} bytes`);
      await writeFile(join(data, 'square', 'phone.jpg'), big);
      const p = await publishDataset(c.bus, data, { progress: false, backbone: model, training: { epochs: 2 } });
      const s = await c.waitForJob(p.jobId, 60_000);
      assert.equal(s.state, JobState.JOB_STATE_DONE, `${s.error}\n${c.logs()}`);
      assert.deepEqual(countsOf(s), { total: 5, cached: 0, extracted: 4, failed: 1 });
      const r = await runGraft(['status', p.jobId, '--failed', '--nats', c.url]);
      assert.match(r.output, /square\/phone\.jpg: too_large: file is \d+ bytes, over the 200000-byte limit/);
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const m = /^graft_image_fetched_bytes_total (\d+)/m.exec(metrics);
      assert.ok(m, 'the worker counts the bytes it fetches');
      assert.ok(Number(m[1]) > 0 && Number(m[1]) < big.length, `the worker fetched ${m[1]} bytes in all, less than the ${big.length}-byte photo`);
    } finally {
      await c.stop();
    }
  });
});
