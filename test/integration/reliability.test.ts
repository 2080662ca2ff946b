import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { generateSampleSet, publishDataset, sampleImage } from '@graft/cli';
import {
  JobState,
  STREAMS,
  codecs,
  encodeVector,
  extractorConsumer,
  manifestSubject,
  resultSubject,
  taskSubject,
  VectorDType,
  readJob,
  readManifest,
  publishManifest,
  vectorKey,
  type BusHandles as Bus,
} from '@graft/protocol/testing';
import { initBackend } from '@graft/vision';
import sharp from 'sharp';
import { TestCluster, countsOf } from '../helpers/cluster.js';
import { writeTinyModel } from '../helpers/models.js';
import { runGraft, waitFor } from '../helpers/process.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function consumerState(bus: Bus, fingerprint: string) {
  const ci = await bus.jsm.consumers.info(STREAMS.tasks, extractorConsumer(fingerprint));
  return { pending: ci.num_pending, unacked: ci.num_ack_pending, redelivered: ci.num_redelivered };
}

async function vectorCount(bus: Bus, fingerprint: string): Promise<number> {
  let n = 0;
  for await (const k of await bus.vectors.keys(`${fingerprint}.>`)) if (k) n++;
  return n;
}

/** Waits until the extractor consumer holds nothing pending or unacknowledged. */
async function drained(bus: Bus, fingerprint: string): Promise<void> {
  await waitFor(
    async () => {
      const c = await consumerState(bus, fingerprint);
      return c.pending === 0 && c.unacked === 0;
    },
    60_000,
    'the task consumer to drain',
  );
}

describe('reliability - nothing lost', () => {
  it('workers killed mid-batch lose nothing and count nothing twice', { timeout: 300_000 }, async () => {
    const c = await new TestCluster(['--ack-wait', '2000', '--task-size', '4']).start({ workers: 3 });
    try {
      const model = await c.convModel();
      const p = await c.publishShapes(80, 11, { backbone: model, training: { epochs: 5 } });
      let kills = 0;
      let lastKill = Date.now();
      let milestone = 32;
      const s = await c.waitForJob(p.jobId, 240_000, async (now) => {
        // Kill every 1.5 s, and at every 32 images extracted, whichever comes first.
        const done = now.counts?.extracted ?? 0;
        if (Date.now() - lastKill < 1500 && done < milestone) return;
        if (done >= milestone) milestone = done + 32;
        lastKill = Date.now();
        const alive = c.workers.filter((w) => w.child.exitCode === null && w.child.signalCode === null);
        const victim = alive[Math.floor(Math.random() * alive.length)];
        if (victim) {
          victim.child.kill('SIGKILL');
          kills++;
        }
        c.startWorker();
      });
      assert.equal(s.state, JobState.JOB_STATE_DONE, `${s.error}\n${c.logs()}`);
      assert.ok(kills >= 3, `killed ${kills} workers`);
      assert.deepEqual(countsOf(s), { total: 320, cached: 0, extracted: 320, failed: 0 });
      const fp = s.backbone!.fingerprint!;
      assert.equal(await vectorCount(c.bus, fp), 320, 'the cache holds exactly the manifest');
      for (const img of p.scan.images) assert.ok(await c.bus.vectors.get(vectorKey(fp, img.sha256)), img.path);
      await drained(c.bus, fp);
    } finally {
      await c.stop();
    }
  });

  it('a result published twice (worker died before its ack) is counted once', { timeout: 120_000 }, async () => {
    await initBackend();
    const c = await new TestCluster(['--ack-wait', '1500']).start({ workers: 0 });
    try {
      const model = await writeTinyModel(await mkdir(join(c.work, 'm'), { recursive: true }).then(() => join(c.work, 'm')));
      const p = await c.publishShapes(4, 12, { classes: ['circle', 'square'], backbone: model, training: { epochs: 3 } });
      const extracting = await waitFor(
        async () => {
          const s = await readJob(c.bus, p.jobId);
          return s?.state === JobState.JOB_STATE_EXTRACTING ? s : undefined;
        },
        30_000,
        'extraction to start',
      );
      const fp = extracting.backbone!.fingerprint!;
      const consumer = await c.bus.js.consumers.get(STREAMS.tasks, extractorConsumer(fp));
      // Play a worker that publishes its vectors and dies before acking, twice.
      for (let delivery = 1; delivery <= 2; delivery++) {
        const msg = await consumer.next({ expires: 10_000 });
        assert.ok(msg, `delivery ${delivery}`);
        assert.equal(msg.info.deliveryCount, delivery);
        const task = codecs.task.decode(msg.data);
        const batch = codecs.vectorBatch.encode({
          jobId: task.jobId,
          taskId: task.taskId,
          taskToken: task.token, // a worker given the task answers with its token
          backboneFingerprint: fp,
          vectors: task.imageSha256.map((sha, i) => ({
            sha256: sha,
            vector: encodeVector(Float32Array.from([i, 1, 2]), VectorDType.VECTOR_DTYPE_FLOAT32),
            dim: 3,
          })),
        });
        const ack = await c.bus.js.publish(resultSubject(task.jobId), batch, { msgID: task.taskId });
        assert.equal(ack.duplicate, delivery === 2, 'JetStream drops the retry by its message id');
        // Even past the de-duplication window the coordinator counts each image once.
        await c.bus.js.publish(resultSubject(task.jobId), batch, { msgID: `${task.taskId}-late-${delivery}` });
        if (delivery === 2) msg.ack();
      }
      const s = await c.waitForJob(p.jobId, 60_000);
      assert.equal(s.state, JobState.JOB_STATE_DONE, s.error);
      assert.deepEqual(countsOf(s), { total: 8, cached: 0, extracted: 8, failed: 0 });
    } finally {
      await c.stop();
    }
  });

  it('a broker killed mid-job and restarted: everyone reconnects and the job completes exactly', { timeout: 300_000 }, async () => {
    const c = await new TestCluster(['--ack-wait', '3000', '--task-size', '4']).start({ workers: 2 });
    try {
      const model = await c.convModel();
      const p = await c.publishShapes(50, 13, { backbone: model, training: { epochs: 5 } });
      await waitFor(async () => ((await readJob(c.bus, p.jobId))?.counts?.extracted ?? 0) >= 20, 120_000, 'some progress');
      await c.nats.crashAndRestart(1000);
      const s = await c.waitForJob(p.jobId, 180_000);
      assert.equal(s.state, JobState.JOB_STATE_DONE, `${s.error}\n${c.logs()}`);
      assert.deepEqual(countsOf(s), { total: 200, cached: 0, extracted: 200, failed: 0 });
      await drained(c.bus, s.backbone!.fingerprint!);
    } finally {
      await c.stop();
    }
  });

  it('a coordinator killed during extraction and during training resumes from JetStream state', { timeout: 300_000 }, async () => {
    const c = await new TestCluster(['--task-size', '4']).start({ workers: 2 });
    try {
      const model = await c.convModel();
      const p = await c.publishShapes(50, 14, { backbone: model, training: { epochs: 5 } });
      const data = p.data;
      await waitFor(async () => ((await readJob(c.bus, p.jobId))?.counts?.extracted ?? 0) >= 20, 120_000, 'some progress');
      c.coordinator!.child.kill('SIGKILL');
      await c.coordinator!.exited;
      c.startCoordinator();
      const s = await c.waitForJob(p.jobId, 180_000);
      assert.equal(s.state, JobState.JOB_STATE_DONE, `${s.error}\n${c.logs()}`);
      assert.deepEqual(countsOf(s), { total: 200, cached: 0, extracted: 200, failed: 0 });

      // Same photos again (all cached), long training: kill the coordinator mid-training.
      const q = await publishDataset(c.bus, data, { progress: false, backbone: model, training: { epochs: 1500, patience: 0 } });
      await waitFor(async () => ((await readJob(c.bus, q.jobId))?.training?.epoch ?? 0) >= 20, 120_000, 'training to pass epoch 20');
      c.coordinator!.child.kill('SIGKILL');
      await c.coordinator!.exited;
      const killedAt = (await readJob(c.bus, q.jobId))!.training!.epoch!;
      const next = c.startCoordinator();
      const t = await c.waitForJob(q.jobId, 300_000);
      assert.equal(t.state, JobState.JOB_STATE_DONE, `${t.error}\n${c.logs()}`);
      assert.equal(t.training!.epoch, 1500, 'training ran to its last epoch');
      const resumed = /"resumeFromEpoch":(\d+)/.exec(next.output());
      assert.ok(resumed && Number(resumed[1]) >= killedAt - 1 && Number(resumed[1]) > 0, `resumed from ${resumed?.[1]} (killed at ${killedAt})`);
      assert.deepEqual(countsOf(t), { total: 200, cached: 200, extracted: 0, failed: 0 });
    } finally {
      await c.stop();
    }
  });

  it('poison images are reported by name and never block the rest', { timeout: 120_000 }, async () => {
    const c = await new TestCluster().start({ workers: 0 });
    c.startWorker(['--max-image-bytes', '150000']);
    try {
      const model = await c.convModel();
      const data = await generateSampleSet(join(c.work, 'shapes'), 5, 15, ['circle', 'square']);
      // A 20,000 x 20,000 PNG (a decompression bomb): only its header is read.
      const bomb = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#fff' } })
        .png()
        .toBuffer();
      bomb.writeUInt32BE(20_000, 16);
      bomb.writeUInt32BE(20_000, 20);
      await writeFile(join(data, 'circle', 'bomb.png'), bomb);
      // Noise compresses badly: a 300 KB file, over this worker's 150 KB limit.
      const noise = randomBytes(500 * 500 * 3);
      await writeFile(
        join(data, 'square', 'huge.png'),
        await sharp(noise, { raw: { width: 500, height: 500, channels: 3 } })
          .png()
          .toBuffer(),
      );
      await writeFile(join(data, 'square', 'corrupt.jpg'), (await sampleImage('square', 5)).subarray(0, 400));
      const p = await publishDataset(c.bus, data, { progress: false, backbone: model, training: { epochs: 5 } });
      const s = await c.waitForJob(p.jobId, 120_000);
      assert.equal(s.state, JobState.JOB_STATE_DONE, `${s.error}\n${c.logs()}`);
      assert.deepEqual(countsOf(s), { total: 13, cached: 0, extracted: 10, failed: 3 });
      const r = await runGraft(['status', p.jobId, '--failed', '--nats', c.url]);
      assert.match(r.output, /circle\/bomb\.png: too_large: image is over the 100000000-pixel limit/);
      assert.match(r.output, /square\/huge\.png: too_large: file is \d+ bytes, over the 150000-byte limit/);
      assert.match(r.output, /square\/corrupt\.jpg: decode_failed/);
    } finally {
      await c.stop();
    }
  });

  it('a task whose workers keep dying is dead-lettered after MaxDeliver; the job still ends', { timeout: 120_000 }, async () => {
    const c = await new TestCluster(['--ack-wait', '1000', '--max-deliver', '2', '--task-size', '4']).start({ workers: 0 });
    try {
      const model = await c.convModel();
      const p = await c.publishShapes(6, 20, { classes: ['circle', 'square'], backbone: model, training: { epochs: 3 } });
      const s1 = await waitFor(
        async () => {
          const s = await readJob(c.bus, p.jobId);
          return s?.state === JobState.JOB_STATE_EXTRACTING ? s : undefined;
        },
        30_000,
        'extraction to start',
      );
      const consumer = await c.bus.js.consumers.get(STREAMS.tasks, extractorConsumer(s1.backbone!.fingerprint!));
      // Play a worker that crashes on the first task, twice (never acks).
      let poisoned: string[] = [];
      for (let delivery = 1; delivery <= 2; delivery++) {
        if (delivery === 2) await sleep(1500); // past AckWait: the redelivery is first in line
        const msg = await consumer.next({ expires: 10_000 });
        assert.ok(msg);
        const task = codecs.task.decode(msg.data);
        if (delivery === 1) poisoned = task.imageSha256;
        assert.deepEqual(task.imageSha256, poisoned, 'the same task comes back');
      }
      c.startWorker();
      const s = await c.waitForJob(p.jobId, 60_000);
      assert.equal(s.state, JobState.JOB_STATE_DONE, `${s.error}\n${c.logs()}`);
      assert.deepEqual(countsOf(s), { total: 12, cached: 0, extracted: 8, failed: 4 });
      assert.deepEqual(s.failures.map((f) => f.sha256).sort(), [...poisoned].sort());
      assert.match(s.failures[0].message, /gave up after 2 deliveries/);
      assert.equal((await c.bus.jsm.streams.info(STREAMS.tasks)).state.messages, 0, 'the dead task left the queue');
    } finally {
      await c.stop();
    }
  });

  it('a task that takes three times AckWait is delivered once', { timeout: 180_000 }, async () => {
    const c = await new TestCluster(['--ack-wait', '1500', '--task-size', '10']).start({ workers: 1 });
    try {
      const data = await generateSampleSet(join(c.work, 'shapes'), 5, 16, ['circle', 'square']);
      const t0 = Date.now();
      const p = await publishDataset(c.bus, data, { progress: false, backbone: 'inception_v3_mixed5', training: { epochs: 3 } });
      const s = await c.waitForJob(p.jobId, 120_000);
      assert.equal(s.state, JobState.JOB_STATE_DONE, `${s.error}\n${c.logs()}`);
      assert.ok(Date.now() - t0 > 4500, 'the task ran past 3x AckWait');
      assert.deepEqual(countsOf(s), { total: 10, cached: 0, extracted: 10, failed: 0 });
      const cs = await consumerState(c.bus, s.backbone!.fingerprint!);
      assert.equal(cs.redelivered, 0, 'no task was redelivered');
    } finally {
      await c.stop();
    }
  });

  it('a full task queue makes the publisher wait; no task is dropped', { timeout: 120_000 }, async () => {
    await initBackend();
    const c = await new TestCluster(['--max-queued-tasks', '2', '--task-size', '2']).start({ workers: 0 });
    try {
      const model = await writeTinyModel(await mkdir(join(c.work, 'm'), { recursive: true }).then(() => join(c.work, 'm')));
      const p = await c.publishShapes(6, 17, { classes: ['circle', 'square'], backbone: model, training: { epochs: 3 } });
      await waitFor(async () => (await c.bus.jsm.streams.info(STREAMS.tasks)).state.messages === 2, 30_000, 'the queue to fill');
      await sleep(1500);
      assert.equal((await c.bus.jsm.streams.info(STREAMS.tasks)).state.messages, 2, 'the bound holds');
      assert.equal((await readJob(c.bus, p.jobId))!.state, JobState.JOB_STATE_EXTRACTING);
      assert.match(c.coordinator!.output(), /task queue is full: waiting for workers/);
      c.startWorker();
      const s = await c.waitForJob(p.jobId, 60_000);
      assert.equal(s.state, JobState.JOB_STATE_DONE, `${s.error}\n${c.logs()}`);
      assert.deepEqual(countsOf(s), { total: 12, cached: 0, extracted: 12, failed: 0 });
    } finally {
      await c.stop();
    }
  });

  it('bad manifests are refused with a clear reason and malformed messages are skipped', { timeout: 120_000 }, async () => {
    await initBackend();
    const c = await new TestCluster().start({ workers: 1 });
    try {
      const model = await writeTinyModel(await mkdir(join(c.work, 'm'), { recursive: true }).then(() => join(c.work, 'm')));
      // Garbage on every graft subject: logged, counted, dropped; nobody crashes.
      const garbage = Uint8Array.from([0xff, 0xfe, 0xfd, 0x01, 0x02]);
      await c.bus.js.publish(manifestSubject('garbage'), garbage);
      await c.bus.js.publish(resultSubject('garbage'), garbage);

      const sha = (ch: string) => ch.repeat(64);
      const refuse = async (name: string, images: { sha256: string; label: string; path: string }[], reason: RegExp) => {
        const jobId = await publishManifest(
          c.bus,
          codecs.manifest.create({ name, classes: ['a', 'b'], images, backbone: { id: 'custom', url: model } }),
          `${name}-`,
        );
        const s = await c.waitForJob(jobId, 30_000);
        assert.equal(s.state, JobState.JOB_STATE_FAILED);
        assert.match(s.error, reason);
      };
      await refuse(
        'unknownclass',
        [
          { sha256: sha('a'), label: 'a', path: 'a/1.jpg' },
          { sha256: sha('b'), label: 'zebra', path: 'zebra/1.jpg' },
        ],
        /zebra\/1\.jpg: unknown class "zebra"/,
      );
      await refuse(
        'duplicates',
        [
          { sha256: sha('a'), label: 'a', path: 'a/1.jpg' },
          { sha256: sha('a'), label: 'a', path: 'a/1.jpg' },
          { sha256: sha('b'), label: 'b', path: 'b/1.jpg' },
        ],
        /a\/1\.jpg: listed twice/,
      );
      const before = (await c.bus.jsm.streams.info(STREAMS.tasks)).state.messages;
      await refuse(
        'missing',
        [
          { sha256: sha('c'), label: 'a', path: 'a/never-uploaded.jpg' },
          { sha256: sha('d'), label: 'b', path: 'b/2.jpg' },
        ],
        /a\/never-uploaded\.jpg: not in the image store/,
      );
      assert.equal((await c.bus.jsm.streams.info(STREAMS.tasks)).state.messages, before, 'nothing enqueued for a refused job');

      // Everyone carries on: a good job still runs.
      const p = await c.publishShapes(4, 18, { classes: ['circle', 'square'], backbone: model, training: { epochs: 3 } });
      const s = await c.waitForJob(p.jobId, 60_000);
      assert.equal(s.state, JobState.JOB_STATE_DONE, `${s.error}\n${c.logs()}`);
      // Garbage on the task queue of a live backbone: the worker terminates it and goes on.
      await c.bus.js.publish(taskSubject(s.backbone!.fingerprint!), garbage);
      await waitFor(async () => /malformed task: terminated/.test(c.workers[0].output()), 30_000, 'the worker to drop the malformed task');
      assert.match(c.coordinator!.output(), /malformed manifest: dropped/);
      assert.match(c.coordinator!.output(), /malformed vector batch: dropped/);
      assert.match(c.workers[0].output(), /malformed task: terminated/);
    } finally {
      await c.stop();
    }
  });

  it('a manifest bigger than a message travels in pages, and its job runs', { timeout: 120_000 }, async () => {
    const c = await new TestCluster().start({ workers: 1 });
    try {
      const model = await c.tinyModel();
      const small = await c.publishShapes(10, 22, { classes: ['circle', 'square'], backbone: model, training: { epochs: 2 } });
      await c.waitForJob(small.jobId, 60_000);
      const base = (await readManifest(c.bus, small.jobId))!;
      // 6,000 entries (the 20 photos under many names): over 512 KiB of image list, so paged.
      const images = Array.from({ length: 6000 }, (_, i) => ({
        ...base.images[i % base.images.length],
        path: `big/${base.images[i % base.images.length].label}/${i}.jpg`,
      }));
      const paged = await publishManifest(c.bus, codecs.manifest.create({ ...base, images }), 'paged-job-');
      assert.ok((await c.bus.jsm.streams.info(STREAMS.manifestPages)).state.messages >= 2, 'the image list went in pages');
      assert.ok(
        (await c.bus.jsm.streams.getMessage(STREAMS.manifests, { last_by_subj: manifestSubject(paged) }))!.data.length < 4096,
        'the manifest itself is a small header',
      );
      const s = await c.waitForJob(paged, 90_000);
      assert.equal(s.state, JobState.JOB_STATE_DONE, `${s.error}\n${c.logs()}`);
      assert.equal(countsOf(s).total, 6000);
      assert.equal((await readManifest(c.bus, paged))!.images.length, 6000, 'read back whole');
    } finally {
      await c.stop();
    }
  });

  it('SIGTERM: a worker finishes or hands back its tasks and exits 0 at once', { timeout: 180_000 }, async () => {
    const c = await new TestCluster(['--task-size', '6']).start({ workers: 1 });
    try {
      const p = await c.publishShapes(9, 19, { classes: ['circle', 'square'], backbone: 'inception_v3_mixed5', training: { epochs: 3 } });
      const s1 = await waitFor(
        async () => {
          const s = await readJob(c.bus, p.jobId);
          // The record names the backbone a moment before the coordinator has made its queue.
          const held = s?.backbone?.fingerprint ? await consumerState(c.bus, s.backbone.fingerprint).catch(() => undefined) : undefined;
          return held && held.unacked > 0 ? s : undefined;
        },
        60_000,
        'the worker to hold a task',
      );
      const fp = s1.backbone!.fingerprint!;
      const code = await c.workers[0].stop(25_000);
      assert.equal(code, 0, c.workers[0].output().slice(-2000));
      assert.match(c.workers[0].output(), /task handed back for redelivery/);
      // Handed back (nak), not left to time out: the next pull gets it at once, long before
      // the 30 s AckWait would have released it.
      const consumer = await c.bus.js.consumers.get(STREAMS.tasks, extractorConsumer(fp));
      const back = await consumer.next({ expires: 3000 });
      assert.ok(back, 'the task in hand is available again');
      back.nak();
      c.startWorker();
      const s = await c.waitForJob(p.jobId, 120_000);
      assert.equal(s.state, JobState.JOB_STATE_DONE, `${s.error}\n${c.logs()}`);
      assert.deepEqual(countsOf(s), { total: 18, cached: 0, extracted: 18, failed: 0 });
    } finally {
      await c.stop();
    }
  });

  it('SIGTERM with the broker gone: workers and the coordinator still exit 0, promptly', { timeout: 120_000 }, async () => {
    const c = await new TestCluster(['--task-size', '4']).start({ workers: 2 });
    try {
      const p = await c.publishShapes(8, 23, { classes: ['circle', 'square'], backbone: 'inception_v3_mixed5', training: { epochs: 3 } });
      await waitFor(async () => ((await readJob(c.bus, p.jobId))?.counts?.extracted ?? 0) >= 4, 120_000, 'extraction to be under way');
      await c.bus.close();
      await c.nats.stop();
      await sleep(1000);
      // stop() sends SIGTERM and waits up to 30 s before SIGKILL: exit code 0 means each left by itself.
      const codes = await Promise.all([c.coordinator!, ...c.workers].map((p) => p.stop(30_000)));
      assert.deepEqual(codes, [0, 0, 0], c.logs());
    } finally {
      await c.stop();
    }
  });

  it('the task timeout bounds the whole task, fetching included, not only decoding', { timeout: 120_000 }, async () => {
    await initBackend();
    const c = await new TestCluster(['--max-deliver', '2', '--ack-wait', '2000']).start({ workers: 0 });
    c.startWorker(['--task-timeout', '1']);
    try {
      const model = await writeTinyModel(await mkdir(join(c.work, 'm'), { recursive: true }).then(() => join(c.work, 'm')));
      const p = await c.publishShapes(2, 24, { classes: ['circle', 'square'], backbone: model, training: { epochs: 2 } });
      const s = await c.waitForJob(p.jobId, 60_000);
      assert.equal(s.failures.length, 4, `${s.error}\n${c.logs()}`);
      for (const f of s.failures) assert.match(f.message, /fetching and decoding took over 1 ms/);
    } finally {
      await c.stop();
    }
  });

  it('a worker keeps at most two backbones in memory, unloading the least recently used', { timeout: 120_000 }, async () => {
    await initBackend();
    const c = await new TestCluster().start({ workers: 1 });
    try {
      const data = await generateSampleSet(join(c.work, 'shapes'), 2, 25, ['circle', 'square']);
      for (const size of [16, 24, 32]) {
        const dir = join(c.work, `tiny-${size}`);
        await mkdir(dir, { recursive: true });
        const p = await publishDataset(c.bus, data, { progress: false, backbone: await writeTinyModel(dir, size), training: { epochs: 2 } });
        const s = await c.waitForJob(p.jobId, 60_000);
        assert.equal(s.state, JobState.JOB_STATE_DONE, `${s.error}\n${c.logs()}`);
      }
      const out = c.workers[0].output();
      assert.equal(out.match(/"msg":"backbone loaded, running on /g)?.length, 3);
      assert.equal(out.match(/backbone unloaded \(least recently used\)/g)?.length, 1, 'the first of three was unloaded');
    } finally {
      await c.stop();
    }
  });
});
