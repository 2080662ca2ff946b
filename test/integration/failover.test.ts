import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { nanos } from '@nats-io/transport-node';
import { generateSampleSet, publishDataset } from '@graft/cli';
import {
  JobState,
  LEASES,
  STREAMS,
  VectorDType,
  claimProof,
  codecs,
  createClaim,
  encodeVector,
  extractorConsumer,
  freePort,
  markClaimAnswered,
  openBus,
  readJob,
  renewClaim,
  resultSubject,
  type BusHandles as Bus,
  type ExtractionTask,
  type JobStatus,
} from '@graft/protocol/testing';
import { initBackend } from '@graft/vision';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { TestCluster, countsOf } from '../helpers/cluster.js';
import { writeConvModel } from '../helpers/models.js';
import { startTestNatsCluster } from '../helpers/nats.js';
import type { Spawned } from '../helpers/process.js';
import { runGraft, spawnGraft, waitFor } from '../helpers/process.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Starts a worker serving /metrics on a free port; returns the port. */
async function meteredWorker(c: TestCluster): Promise<number> {
  const port = await freePort();
  c.startWorker(['--metrics-port', String(port)]);
  return port;
}

/** Images the workers turned into vectors, summed over their /metrics: backbone work, not the coordinator's books. */
async function imagesEmbedded(ports: number[]): Promise<number> {
  let sum = 0;
  for (const p of ports) {
    const text = await (await fetch(`http://127.0.0.1:${p}/metrics`)).text();
    sum += Number(/^graft_images_extracted_total (\d+)/m.exec(text)?.[1] ?? 0);
  }
  return sum;
}

/** The coordinator process holding the lease. */
async function leader(bus: Bus, coordinators: Spawned[], not?: Spawned): Promise<Spawned> {
  return waitFor(
    async () => {
      const e = await bus.leases.get(LEASES.coordinator);
      if (!e || e.operation !== 'PUT') return undefined;
      const holder = codecs.coordinatorLease.decode(e.value).holder;
      const p = coordinators.find((x) => holder === `${hostname()}-${x.child.pid}`);
      return p && p !== not ? p : undefined;
    },
    60_000,
    'a coordinator to lead',
  );
}

const alive = (p: Spawned) => p.child.exitCode === null && p.child.signalCode === null;

describe('failover - one coordinator leads, outages are waited out', () => {
  it('two coordinators: a paused leader steps down, a killed one is replaced, and every image is embedded once', { timeout: 300_000 }, async () => {
    const c = await new TestCluster(['--lease-ttl', '3000', '--task-size', '4', '--ack-wait', '5000']).start({ workers: 0 });
    try {
      const first = c.coordinator!;
      const second = c.startCoordinator();
      const coordinators = [first, second];
      const ports = [await meteredWorker(c), await meteredWorker(c)];
      const model = await c.convModel();
      const p = await c.publishShapes(80, 41, { backbone: model, training: { epochs: 1500, patience: 0 } });

      // Mid-extraction, the leader freezes (a long GC pause, a stopped VM) past its lease.
      await waitFor(async () => ((await readJob(c.bus, p.jobId))?.counts?.extracted ?? 0) >= 40, 120_000, 'extraction to be under way');
      const a = await leader(c.bus, coordinators);
      a.child.kill('SIGSTOP');
      const b = await leader(c.bus, coordinators, a);
      a.child.kill('SIGCONT');
      await waitFor(async () => /lost the coordinator lease/.test(a.output()), 30_000, 'the old leader to step down');

      // Mid-training, the new leader dies; the old one, now standing by, takes over from the checkpoint.
      await waitFor(
        async () => {
          const s = await readJob(c.bus, p.jobId);
          return s?.state === JobState.JOB_STATE_TRAINING && (s.training?.epoch ?? 0) >= 5;
        },
        120_000,
        'training to be under way',
      ).catch(async (err: Error) => {
        // Say where the job stood and what every process said: a timeout alone explains nothing.
        const s = await readJob(c.bus, p.jobId).catch(() => undefined);
        throw new Error(
          `${err.message}; job: ${JSON.stringify(s && { state: s.state, counts: countsOf(s), epoch: s.training?.epoch, error: s.error })}\n${c.logs()}`,
        );
      });
      b.child.kill('SIGKILL');
      const s = await c.waitForJob(p.jobId, 180_000);
      assert.equal(s.state, JobState.JOB_STATE_DONE, `${s.error}\n${c.logs()}`);
      assert.deepEqual(countsOf(s), { total: 320, cached: 0, extracted: 320, failed: 0 });
      assert.equal(s.training!.epoch, 1500, 'training ran to its last epoch');
      assert.equal(await imagesEmbedded(ports), 320, 'each image went through the backbone exactly once');
      assert.match(a.output(), /job resumed/, 'the standby resumed the job');
      const done = coordinators.map(
        (x) =>
          x
            .output()
            .split('\n')
            .filter((l) => l.includes('"msg":"job done')).length,
      );
      assert.equal(done[0] + done[1], 1, 'one training finished the job, never two');
      assert.ok(alive(a), 'the old leader is still running, standing by or leading');
    } finally {
      await c.stop();
    }
  });

  for (const downMs of [15_000, 60_000]) {
    it(
      `a ${downMs / 1000} s broker outage ${downMs < 60_000 ? 'during extraction and again ' : ''}during training: the job finishes, nobody exits`,
      { timeout: 420_000 },
      async () => {
        const c = await new TestCluster(['--task-size', '4']).start({ workers: 0 });
        try {
          const ports = [await meteredWorker(c)];
          const model = await c.convModel();
          const data = await generateSampleSet(join(c.work, 'shapes'), 40, 42, ['circle', 'square']);
          // Long enough training (thousands of short epochs) that the second outage lands in it.
          const p = await publishDataset(c.bus, data, { progress: false, backbone: model, training: { epochs: 1500, patience: 0 } });
          await waitFor(async () => ((await readJob(c.bus, p.jobId))?.counts?.extracted ?? 0) >= 12, 120_000, 'extraction to be under way');
          if (downMs < 60_000) await c.nats.crashAndRestart(downMs);
          await waitFor(
            async () => {
              const s = await readJob(c.bus, p.jobId).catch(() => undefined);
              return s?.state === JobState.JOB_STATE_TRAINING && (s.training?.epoch ?? 0) >= 5;
            },
            180_000,
            'training to be under way',
          ).catch(async (err: Error) => {
            const s = await readJob(c.bus, p.jobId).catch(() => undefined);
            throw new Error(`${err.message}; job: ${JSON.stringify(s && { state: s.state, counts: countsOf(s), epoch: s.training?.epoch })}\n${c.logs()}`);
          });
          await c.nats.crashAndRestart(downMs);
          const s = await c.waitForJob(p.jobId, 240_000).catch(async (err: Error) => {
            // Say where the job stood and what every process said: a timeout alone explains nothing.
            const last = await readJob(c.bus, p.jobId).catch(() => undefined);
            throw new Error(
              `${err.message}; job: ${JSON.stringify(last && { state: last.state, counts: countsOf(last), epoch: last.training?.epoch, error: last.error })}\n${c.logs()}`,
            );
          });
          assert.equal(s.state, JobState.JOB_STATE_DONE, `${s.error}\n${c.logs()}`);
          assert.deepEqual(countsOf(s), { total: 80, cached: 0, extracted: 80, failed: 0 });
          assert.equal(s.training!.epoch, 1500);
          assert.equal(await imagesEmbedded(ports), 80, `nothing extracted twice\n${c.logs()}`);
          assert.ok(alive(c.coordinator!), `the coordinator never exited\n${c.logs()}`);
          assert.ok(c.workers.every(alive), 'nor did the worker');
        } finally {
          await c.stop();
        }
      },
    );
  }

  it(
    'a lease lost while an audit folds, and while a sweep trains: each job pauses, resumes when the lease is back and finishes',
    { timeout: 420_000 },
    async () => {
      const c = await new TestCluster(['--task-size', '8', '--lease-ttl', '2000']).start({ workers: 1 });
      try {
        const model = await c.tinyModel();
        const data = await generateSampleSet(join(c.work, 'shapes'), 30, 47, ['circle', 'square']);
        const outage = async (jobId: string, phase: JobState, what: string, ready: (s: JobStatus) => boolean) => {
          await waitFor(
            async () => {
              const s = await readJob(c.bus, jobId).catch(() => undefined);
              return s?.state === phase && ready(s);
            },
            180_000,
            what,
          ).catch(async (err: Error) => {
            const s = await readJob(c.bus, jobId).catch(() => undefined);
            throw new Error(`${err.message}; job: ${JSON.stringify(s && { state: s.state, error: s.error })}\n${c.logs()}`);
          });
          await c.nats.crashAndRestart(8000); // four lease lifetimes
          const s = await c.waitForJob(jobId, 240_000);
          assert.equal(s.state, JobState.JOB_STATE_DONE, `${what}: ${s.error}\n${c.logs()}`);
          return s;
        };
        // Ten folds of a long head: the outage lands in the audit.
        const audited = await publishDataset(c.bus, data, {
          progress: false,
          backbone: model,
          training: { epochs: 400, patience: 0, audit: true, auditFolds: 10 },
        });
        await outage(audited.jobId, JobState.JOB_STATE_AUDITING, 'the audit to be under way', () => true);
        const swept = await publishDataset(c.bus, data, {
          progress: false,
          backbone: model,
          training: { epochs: 400, patience: 0, sweep: true, sweepGrid: JSON.stringify({ learningRate: [0.001, 0.002, 0.003, 0.004, 0.005, 0.006] }) },
        });
        const s = await outage(swept.jobId, JobState.JOB_STATE_SWEEPING, 'the sweep to be under way', (x) => (x.sweep?.headsDone ?? 0) >= 1);
        assert.equal(s.sweep?.heads, 6);
        // Both jobs went through an outage four lease lifetimes long. Work checks the lease between folds and heads;
        // a fold or head whose store waited out the outage may find the lease renewed already (and carries on), or
        // not yet (and pauses): either way the job finishes, and the outage shows: a pause, or stores retried until the bus was back.
        assert.match(c.coordinator!.output(), /job paused|retrying until the bus is back/);
        assert.doesNotMatch(c.coordinator!.output(), /training failed/);
        assert.ok(alive(c.coordinator!), 'the coordinator never exited');
      } finally {
        await c.stop();
      }
    },
  );

  it('a coordinator restarted long after its tasks were queued re-enqueues nothing that is still on its way', { timeout: 180_000 }, async () => {
    const c = await new TestCluster(['--task-size', '4']).start({ workers: 0 });
    try {
      const model = await c.convModel();
      const p = await c.publishShapes(12, 43, { classes: ['circle', 'square'], backbone: model, training: { epochs: 3 } });
      await waitFor(async () => (await c.bus.jsm.streams.info(STREAMS.tasks)).state.messages === 6, 30_000, 'the tasks to be queued');
      // Past the dedupe window (10 minutes in production; shortened here) ...
      const cfg = (await c.bus.jsm.streams.info(STREAMS.tasks)).config;
      await c.bus.jsm.streams.update(STREAMS.tasks, { ...cfg, duplicate_window: nanos(200) });
      await sleep(1000);
      // ... the coordinator restarts: the queued tasks must not be published again.
      c.coordinator!.child.kill('SIGKILL');
      await c.coordinator!.exited;
      const next = c.startCoordinator();
      await waitFor(async () => /job resumed/.test(next.output()), 60_000, 'the job to resume');
      assert.equal((await c.bus.jsm.streams.info(STREAMS.tasks)).state.messages, 6, 'still six tasks on the queue');
      const ports = [await meteredWorker(c)];
      const s = await c.waitForJob(p.jobId, 120_000);
      assert.equal(s.state, JobState.JOB_STATE_DONE, `${s.error}\n${c.logs()}`);
      assert.equal(await imagesEmbedded(ports), 24, 'each image embedded once');
    } finally {
      await c.stop();
    }
  });

  it('a job with more failures than a record can hold still ends, listing the first ones and counting the rest', { timeout: 180_000 }, async () => {
    const c = await new TestCluster().start({ workers: 1, natsConfig: 'max_payload: 64KB' });
    try {
      const model = await c.convModel();
      const data = await generateSampleSet(join(c.work, 'shapes'), 5, 44, ['circle', 'square']);
      for (let i = 0; i < 500; i++) await writeFile(join(data, 'circle', `bad-${i}.jpg`), `not a photo ${i}`);
      const p = await publishDataset(c.bus, data, { progress: false, backbone: model, training: { epochs: 3 } });
      const s = await c.waitForJob(p.jobId, 150_000);
      assert.equal(s.state, JobState.JOB_STATE_DONE, `${s.error}\n${c.logs()}`);
      assert.deepEqual(countsOf(s), { total: 510, cached: 0, extracted: 10, failed: 500 });
      assert.ok(s.failures.length > 0 && s.failures.length < 500, `${s.failures.length} failures listed`);
      assert.equal(s.failures.length + (s.failuresOmitted ?? 0), 500, 'the rest are counted');
    } finally {
      await c.stop();
    }
  });

  it('a task that comes back after its answer was cached (its ack lost with a server) is not embedded again', { timeout: 120_000 }, async () => {
    await initBackend();
    const c = await new TestCluster(['--ack-wait', '1500', '--task-size', '4']).start({ workers: 0 });
    try {
      const model = await c.tinyModel();
      const p = await c.publishShapes(6, 21, { classes: ['circle', 'square'], backbone: model, training: { epochs: 3 } });
      const fp = (await waitFor(async () => (await readJob(c.bus, p.jobId))?.backbone?.fingerprint, 30_000, 'the job to start'))!;
      // Play a worker that answers one task and whose ack the broker then loses: the task stays pending.
      const consumer = await c.bus.js.consumers.get(STREAMS.tasks, extractorConsumer(fp));
      const msg = await consumer.next({ expires: 10_000 });
      assert.ok(msg, 'a task');
      const task = codecs.task.decode(msg.data);
      const batch = codecs.vectorBatch.encode({
        jobId: task.jobId,
        taskId: task.taskId,
        taskToken: task.token, // a worker given the task answers with its token
        backboneFingerprint: fp,
        vectors: task.imageSha256.map((sha) => ({ sha256: sha, vector: encodeVector(Float32Array.from([1, 2, 3]), VectorDType.VECTOR_DTYPE_FLOAT32), dim: 3 })),
      });
      await c.bus.js.publish(resultSubject(task.jobId), batch, { msgID: task.taskId });
      await waitFor(async () => ((await readJob(c.bus, p.jobId))?.counts?.extracted ?? 0) >= task.imageSha256.length, 30_000, 'the answer to be cached');
      msg.nak(); // as if the ack were lost: the task is delivered again, to a real worker
      const port = await meteredWorker(c);
      const s = await c.waitForJob(p.jobId, 60_000);
      assert.equal(s.state, JobState.JOB_STATE_DONE, `${s.error}\n${c.logs()}`);
      assert.deepEqual(countsOf(s), { total: 12, cached: 0, extracted: 12, failed: 0 });
      assert.equal(await imagesEmbedded([port]), 12 - task.imageSha256.length, `the answered task was not embedded again\n${c.logs()}`);
      assert.match(c.logs(), /task came back already answered/);
    } finally {
      await c.stop();
    }
  });

  it(
    'a task redelivered while another worker still embeds it waits for that answer (acked once the claim says answered); a released claim is taken over',
    { timeout: 120_000 },
    async () => {
      await initBackend();
      const c = await new TestCluster(['--ack-wait', '1500', '--task-size', '4']).start({ workers: 0 });
      try {
        const model = await c.tinyModel();
        const p = await c.publishShapes(6, 22, { classes: ['circle', 'square'], backbone: model, training: { epochs: 3 } });
        const fp = (await waitFor(async () => (await readJob(c.bus, p.jobId))?.backbone?.fingerprint, 30_000, 'the job to start'))!;
        // Play a worker that claims two tasks and loses their leases (as when the server leading the
        // consumer dies): both are redelivered to a real worker while the claims stand.
        const consumer = await c.bus.js.consumers.get(STREAMS.tasks, extractorConsumer(fp));
        const msgs = [];
        for (let i = 0; i < 2; i++) {
          const msg = await consumer.next({ expires: 10_000 });
          assert.ok(msg, `task ${i}`);
          msgs.push(msg);
        }
        const held: ExtractionTask[] = [];
        for (const msg of msgs) {
          const task = codecs.task.decode(msg.data);
          await createClaim(c.bus, task.taskId, 'slow-worker', claimProof(task.token, 'claim')); // a worker's claim proves it holds the task
          msg.nak();
          held.push(task);
        }
        // The slow worker is alive: it renews its claims, as a worker does three times per AckWait.
        const renewing = new Set(held.map((t) => t.taskId));
        const renewal = setInterval(() => {
          for (const t of held)
            if (renewing.has(t.taskId)) void renewClaim(c.bus, t.taskId, 'slow-worker', claimProof(t.token, 'claim')).catch(() => undefined);
        }, 300);
        const port = await meteredWorker(c);
        await waitFor(async () => c.logs().includes('waiting for its answer'), 30_000, `the real worker to wait on the claim\n${c.logs()}`);
        // The slow worker answers the first task, and hands the second back (releasing its claim).
        const [answered, released] = held;
        const batch = codecs.vectorBatch.encode({
          jobId: answered.jobId,
          taskId: answered.taskId,
          taskToken: answered.token,
          backboneFingerprint: fp,
          vectors: answered.imageSha256.map((sha) => ({
            sha256: sha,
            vector: encodeVector(Float32Array.from([1, 2, 3]), VectorDType.VECTOR_DTYPE_FLOAT32),
            dim: 3,
          })),
        });
        await sleep(3000); // longer than AckWait: the real worker must not take over a claim that is renewed
        // The slow worker hands the second task back (its claim released): the real worker takes it.
        renewing.delete(released.taskId);
        await c.bus.claims.delete(released.taskId);
        // It answers the first, and marks its claim answered before its result reaches the coordinator:
        // the real worker acknowledges that task without running the backbone.
        renewing.delete(answered.taskId);
        clearInterval(renewal);
        await markClaimAnswered(c.bus, answered.taskId, 'slow-worker', claimProof(answered.token, 'answered'));
        await waitFor(async () => /task came back already answered/.test(c.logs()), 30_000, `the real worker to see the answered claim\n${c.logs()}`);
        await c.bus.js.publish(resultSubject(answered.jobId), batch, { msgID: answered.taskId });
        const s = await c.waitForJob(p.jobId, 90_000);
        assert.equal(s.state, JobState.JOB_STATE_DONE, `${s.error}\n${c.logs()}`);
        assert.deepEqual(countsOf(s), { total: 12, cached: 0, extracted: 12, failed: 0 });
        assert.equal(await imagesEmbedded([port]), 12 - answered.imageSha256.length, `only the answered task was left alone\n${c.logs()}`);
      } finally {
        await c.stop();
      }
    },
  );

  it(
    'past one broker: on a 3-server JetStream cluster, a server killed mid-extraction and another mid-training change nothing',
    { timeout: 420_000 },
    async () => {
      const nats = await startTestNatsCluster(3);
      const work = await mkdtemp(join(tmpdir(), 'graft-3nodes-'));
      const procs: Spawned[] = [];
      let bus: Bus | undefined;
      try {
        const env = { GRAFT_HOME: work };
        const init = await runGraft(['init', '--nats', nats.urls, '--replicas', '3'], env);
        assert.equal(init.code, 0, init.output);
        bus = await openBus({ servers: nats.urls }, { create: false });
        for (const name of Object.values(STREAMS)) assert.equal((await bus.jsm.streams.info(name)).config.num_replicas, 3, `${name} has 3 replicas`);
        procs.push(spawnGraft(['coordinator', '--nats', nats.urls, '--allow-model-files', '--replicas', '3', '--task-size', '4', '--ack-wait', '10000'], env));
        const ports: number[] = [];
        for (let i = 0; i < 2; i++) {
          ports.push(await freePort());
          procs.push(spawnGraft(['worker', '--nats', nats.urls, '--metrics-port', String(ports[i])], env));
        }
        await initBackend();
        await mkdir(join(work, 'm'), { recursive: true });
        const model = await writeConvModel(join(work, 'm'));
        const data = await generateSampleSet(join(work, 'shapes'), 40, 45);
        const p = await publishDataset(bus, data, { progress: false, backbone: model, training: { epochs: 1500, patience: 0 } });
        const logs = () => procs.map((x, i) => `--- process ${i}\n${x.output().slice(-3000)}`).join('\n');
        const b = bus;
        const job = () => readJob(b, p.jobId).catch(() => undefined);

        await waitFor(async () => ((await job())?.counts?.extracted ?? 0) >= 20, 120_000, 'extraction to be under way');
        await nats.crash(0);
        await sleep(5000);
        await nats.restart(0);
        await waitFor(
          async () => {
            const s = await job();
            return s?.state === JobState.JOB_STATE_TRAINING && (s.training?.epoch ?? 0) >= 5;
          },
          180_000,
          `training to be under way\n${logs()}`,
        );
        await nats.crash(1);
        await sleep(5000);
        await nats.restart(1);
        const s = await waitFor(
          async () => {
            const r = await job();
            return r && (r.state === JobState.JOB_STATE_DONE || r.state === JobState.JOB_STATE_FAILED) ? r : undefined;
          },
          240_000,
          `the job to end\n${logs()}`,
        );
        assert.equal(s.state, JobState.JOB_STATE_DONE, `${s.error}\n${logs()}`);
        assert.deepEqual(countsOf(s), { total: 160, cached: 0, extracted: 160, failed: 0 });
        assert.equal(await imagesEmbedded(ports), 160, `every image extracted once\n${logs()}`);
        assert.ok(procs.every(alive), 'clients failed over without a restart');
      } finally {
        await bus?.close();
        await Promise.all(procs.map((x) => x.stop(10_000)));
        await nats.cleanup();
        await rm(work, { recursive: true, force: true });
      }
    },
  );
});
