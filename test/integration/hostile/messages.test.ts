import assert from 'node:assert/strict';
import { copyFile, mkdir, readdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateSampleSet, publishDataset } from '@graft/cli';
import {
  ErrorCode,
  JobState,
  STREAMS,
  VectorDType,
  bindJobId,
  cacheVector,
  claimProof,
  codecs,
  encodeVector,
  extractorConsumer,
  freePort,
  manifestSubject,
  markClaimAnswered,
  openBus,
  publishManifest,
  readCachedVector,
  readJob,
  readManifest,
  resultSubject,
  vectorOf,
  WORKER_STREAMS,
  type BusHandles as Bus,
  type DatasetManifest,
} from '@graft/protocol/testing';
import { TestCluster, countsOf } from '../../helpers/cluster.js';
import { PASSWORDS, deployedAuthorization } from '../../helpers/deploy.js';
import { runGraft, waitFor } from '../../helpers/process.js';

/*
 * Hostile messages against the shipped deploy config: a cli user's manifests and a worker's results
 * written to hurt are refused at the boundary, dead-lettered with their reason, and the coordinator
 * goes on serving everyone else.
 */

const ROLE_ENV = { GRAFT_NATS_USER: 'coordinator', GRAFT_NATS_PASSWORD: PASSWORDS.GRAFT_COORDINATOR_PASSWORD };

/** The dead letters' reasons, newest last (read as the coordinator, which may). */
async function deadLetterReasons(admin: Bus): Promise<string[]> {
  const out: string[] = [];
  const info = await admin.jsm.streams.info(STREAMS.deadLetters);
  for (let seq = info.state.first_seq; seq > 0 && seq <= info.state.last_seq; seq++) {
    const m = await admin.jsm.streams.getMessage(STREAMS.deadLetters, { seq }).catch(() => null);
    if (m) out.push(m.header.get('Graft-Reason'));
  }
  return out;
}

describe('hostile inputs (the deployed roles)', () => {
  let c: TestCluster;
  let admin: Bus;
  let worker: Bus;
  let metricsPort: number;
  let model: string;
  let data: string;
  /** The job published by its owner in the first test, which the later ones forge from. */
  let victim: string;

  before(async () => {
    Object.assign(process.env, PASSWORDS); // nats-server reads the passwords from its environment
    metricsPort = await freePort();
    c = new TestCluster(['--metrics-port', String(metricsPort)], ROLE_ENV);
    await c.start({ workers: 0, natsConfig: await deployedAuthorization(), busUser: { user: 'cli', pass: PASSWORDS.GRAFT_CLI_PASSWORD } });
    admin = await openBus({ servers: c.url, user: 'coordinator', pass: PASSWORDS.GRAFT_COORDINATOR_PASSWORD }, { create: false });
    worker = await openBus({ servers: c.url, user: 'worker', pass: PASSWORDS.GRAFT_WORKER_PASSWORD }, { create: false, uses: WORKER_STREAMS });
    model = await c.tinyModel();
    data = await generateSampleSet(join(c.work, 'shapes'), 4, 23, ['circle', 'square']);
  });
  after(async () => {
    await worker?.close();
    await admin?.close();
    await c?.stop();
  });

  const workerEnv = { GRAFT_NATS_USER: 'worker', GRAFT_NATS_PASSWORD: PASSWORDS.GRAFT_WORKER_PASSWORD };
  const ready = async () => (await fetch(`http://127.0.0.1:${metricsPort}/readyz`)).status;

  it(
    "manifests written to hurt (a 5,000-character id, wildcards, another job's id, a negative learning rate) are refused at once; the coordinator serves the next",
    { timeout: 180_000 },
    async () => {
      // A real job's manifest, kept to forge from (its images are uploaded).
      const base = await publishDataset(c.bus, data, { progress: false, backbone: model, training: { epochs: 2 } });
      const real = (await readManifest(c.bus, base.jobId))!;
      const forge = (jobId: string, extra: Partial<DatasetManifest> = {}) => codecs.manifest.encode({ ...real, jobId, ...extra });
      const before = (await deadLetterReasons(admin)).length;

      await c.bus.js.publish(manifestSubject('long1'), forge('x'.repeat(5000)));
      for (const [i, id] of ['a*b', 'a b', 'a>b'].entries()) await c.bus.js.publish(manifestSubject(`bad${i}`), forge(id));
      await c.bus.js.publish(manifestSubject('attackerX'), forge('victimX'));
      await waitFor(async () => (await deadLetterReasons(admin)).length >= before + 5, 30_000, `5 dead letters\n${c.logs()}`);
      const reasons = (await deadLetterReasons(admin)).slice(before);
      assert.equal(reasons.filter((r) => /is not valid/.test(r)).length, 4, reasons.join('\n'));
      assert.ok(
        reasons.some((r) => /5000 characters/.test(r)),
        'the long id is named by its length, not quoted whole',
      );
      assert.ok(
        reasons.some((r) => /published on "graft\.manifests\.attackerX" but names job victimX/.test(r)),
        reasons.join('\n'),
      );
      assert.equal(await readJob(c.bus, 'victimX'), undefined, "the victim job was not started by someone else's manifest");
      assert.equal(c.coordinator!.child.exitCode, null, 'the coordinator is alive');
      assert.equal(await ready(), 200, 'and ready');

      // A negative learning rate is refused when the manifest arrives, not after extraction.
      const lr = codecs.manifest.create({ ...real, training: { ...real.training, learningRate: -1 } });
      const s = await c.waitForJob(await publishManifest(c.bus, lr, 'negative-lr-'), 30_000);
      assert.equal(s.state, JobState.JOB_STATE_FAILED);
      assert.match(s.error, /learningRate must be in \(0, 10\), got -1/);
      assert.equal(s.backbone?.fingerprint ?? '', '', 'refused before the backbone was even resolved: nothing extracted');

      // The victim's own manifest, published by its owner, runs.
      victim = await publishManifest(c.bus, codecs.manifest.create({ ...real }), 'victimX-');
      c.startWorker([], workerEnv);
      for (const id of [base.jobId, victim]) assert.equal((await c.waitForJob(id, 90_000)).state, JobState.JOB_STATE_DONE, `${id}\n${c.logs()}`);
    },
  );

  it('a sweep grid of 10^9 heads is refused on arrival; the coordinator neither dies nor dies again on restart', { timeout: 120_000 }, async () => {
    const real = (await readManifest(c.bus, victim))!;
    const values = Array.from({ length: 25 }, (_, i) => 0.0001 * (i + 1));
    const grid = JSON.stringify({
      learningRate: values,
      weightDecay: values,
      labelSmoothing: values.map((v) => v / 10),
      dropout: values.map((v) => v / 10),
      batchSize: values.map((_, i) => i + 8),
      hiddenUnits: values.map((_, i) => i + 1),
      optimizer: Array(25).fill('adam'),
    });
    assert.ok(grid.length < 2000, `a small message: ${grid.length} bytes`);
    const s = await c.waitForJob(
      await publishManifest(c.bus, codecs.manifest.create({ ...real, training: { ...real.training, sweep: true, sweepGrid: grid } }), 'huge-sweep-'),
      30_000,
    );
    assert.equal(s.state, JobState.JOB_STATE_FAILED);
    assert.match(s.error, /the sweep grid asks for 6\.10e\+9 heads, over 1000/);
    // An audit of 4 billion folds is refused the same way.
    const a = await c.waitForJob(
      await publishManifest(c.bus, codecs.manifest.create({ ...real, training: { ...real.training, audit: true, auditFolds: 4_000_000_000 } }), 'huge-audit-'),
      30_000,
    );
    assert.equal(a.state, JobState.JOB_STATE_FAILED);
    assert.match(a.error, /audit folds must be an integer from 2 to 20, got 4000000000/);
    await c.coordinator!.stop(10_000);
    c.startCoordinator();
    await waitFor(async () => (await ready().catch(() => 0)) === 200, 60_000, 'the restarted coordinator to be ready');
    const p = await publishDataset(c.bus, data, {
      progress: false,
      backbone: model,
      training: { epochs: 2, sweep: true, sweepGrid: JSON.stringify({ learningRate: [0.001, 0.003] }) },
    });
    const t = await c.waitForJob(p.jobId, 90_000);
    assert.equal(t.state, JobState.JOB_STATE_DONE, `${t.error}\n${c.logs()}`);
    assert.equal(c.coordinator!.child.exitCode, null);
  });

  it(
    'a manifest header that lies about its pages (pages never published, 10^12 photos) is refused and dead-lettered; the coordinator serves the next',
    { timeout: 60_000 },
    async () => {
      const real = (await readManifest(c.bus, victim))!;
      const before = (await deadLetterReasons(admin)).length;
      // Published as bare headers (ids made from them): the pages they name were never written (or could never be).
      const bare = async (prefix: string, header: Partial<DatasetManifest>) => {
        const h = bindJobId(prefix, codecs.manifest.create({ ...real, images: [], ...header }));
        await c.bus.js.publish(manifestSubject(h.jobId), codecs.manifest.encode(h));
        return h.jobId;
      };
      const lyingId = await bare('lying-pages-', { imagePages: 3, imageCount: 90 });
      const absurdId = await bare('absurd-count-', { imagePages: 1, imageCount: 1e12 });
      const lying = await c.waitForJob(lyingId, 30_000);
      assert.equal(lying.state, JobState.JOB_STATE_FAILED);
      assert.match(lying.error, /manifest of lying-pages-[0-9a-f]+ is missing page 1 of 3/);
      const absurd = await c.waitForJob(absurdId, 30_000);
      assert.equal(absurd.state, JobState.JOB_STATE_FAILED);
      assert.match(absurd.error, /asks for 1 pages and 1000000000000 images, over 100000 and 20000000/);
      const reasons = (await deadLetterReasons(admin)).slice(before);
      assert.equal(reasons.filter((r) => /missing page|over 100000 and 20000000/.test(r)).length, 2, reasons.join('\n'));
      assert.equal(c.coordinator!.child.exitCode, null, 'the coordinator is alive');
      const p = await publishDataset(c.bus, data, { progress: false, backbone: model, training: { epochs: 2 } });
      assert.equal((await c.waitForJob(p.jobId, 90_000)).state, JobState.JOB_STATE_DONE, c.logs());
    },
  );

  it(
    'a worker cannot poison the vector cache: forged results, NaN and huge vectors, false failures and forged claims are refused',
    { timeout: 180_000 },
    async () => {
      for (const w of c.workers) await w.stop(10_000);
      const data2 = await generateSampleSet(join(c.work, 'shapes2'), 10, 24, ['circle', 'square']); // 20 images: two tasks of 16 and 4
      const p = await publishDataset(c.bus, data2, { progress: false, backbone: model, training: { epochs: 3 } });
      const fp = (await waitFor(async () => (await readJob(c.bus, p.jobId))?.backbone?.fingerprint, 30_000, 'the job to start'))!;
      const consumer = await worker.js.consumers.get(STREAMS.tasks, extractorConsumer(fp));
      const [m1, m2] = [await consumer.next({ expires: 10_000 }), await consumer.next({ expires: 10_000 })];
      const [t1, t2] = [codecs.task.decode(m1!.data), codecs.task.decode(m2!.data)];
      const vec = (x: number, dim = 3) => encodeVector(new Float32Array(dim).fill(x), VectorDType.VECTOR_DTYPE_FLOAT32);
      // A batch from a made-up worker for a made-up task: no token.
      await worker.js.publish(
        resultSubject(p.jobId),
        codecs.vectorBatch.encode({
          jobId: p.jobId,
          taskId: 'made-up',
          workerId: 'evil',
          backboneFingerprint: fp,
          vectors: t1.imageSha256.map((sha) => ({ sha256: sha, vector: vec(NaN), dim: 3 })),
        }),
      );
      // The holder of a real task (a compromised worker): NaN, 3e38 and a false DECODE_FAILED, with the task's token.
      const [a, b, ...rest] = t1.imageSha256;
      await worker.js.publish(
        resultSubject(p.jobId),
        codecs.vectorBatch.encode({
          jobId: p.jobId,
          taskId: t1.taskId,
          taskToken: t1.token,
          workerId: 'evil',
          backboneFingerprint: fp,
          vectors: [
            { sha256: a, vector: vec(NaN), dim: 3 },
            { sha256: b, vector: vec(3e38), dim: 3 },
            ...rest.map((sha) => ({ sha256: sha, errorCode: ErrorCode.ERROR_CODE_DECODE_FAILED, errorMessage: 'forged' })),
          ],
        }),
      );
      // A forged "answered" claim on the other task: no proof of holding it.
      await markClaimAnswered(worker, t2.taskId, 'evil', claimProof('not-the-token', 'answered'));
      m1!.ack(); // the compromised worker acks its task: the coordinator must send the images out again itself
      m2!.nak();
      c.startWorker([], workerEnv);
      const s = await c.waitForJob(p.jobId, 120_000);
      assert.equal(s.state, JobState.JOB_STATE_DONE, `${s.error}\n${c.logs()}`);
      assert.deepEqual(countsOf(s), { total: 20, cached: 0, extracted: 20, failed: 0 }, 'every image has its real vector');
      assert.ok(Number.isFinite(s.training!.loss) && Number.isFinite(s.training!.valLoss), `loss ${s.training!.loss}`);
      for (const sha of [...t1.imageSha256, ...t2.imageSha256]) {
        const e = await readCachedVector(admin, fp, sha);
        const v = vectorOf(e);
        assert.ok(
          v && v.every((x) => Number.isFinite(x) && Math.abs(x) < 1e6),
          `${sha}: a real vector is cached, not ${JSON.stringify(e && { ...e, vector: v && [...v] })}`,
        );
      }
      assert.match(c.coordinator!.output(), /does not carry the token of task \\"made-up\\"/);
      assert.match(c.coordinator!.output(), /but the image decodes here/);
      assert.match(c.coordinator!.output(), /its vector has NaN at 0/);
      assert.match(c.coordinator!.output(), /its vector has 3\.0000000054977558e\+38 at 0, beyond any bottleneck/);
      assert.match(c.workers.at(-1)!.output(), /does not prove it holds the task/);
    },
  );

  it('no role over-reaches: the cli, a worker and the monitor are refused everything beyond their job', { timeout: 120_000 }, async () => {
    const fp = (await readJob(c.bus, victim))!.backbone!.fingerprint!;
    const cli = c.bus;
    const monitor = await openBus({ servers: c.url, user: 'monitor', pass: PASSWORDS.GRAFT_MONITOR_PASSWORD }, { create: false, uses: [] });
    try {
      const refused = async (what: string, op: () => Promise<unknown>) => assert.rejects(op(), (err: Error) => err instanceof Error, what);
      await refused("cli: a stream capturing the coordinator's replies", () => cli.jsm.streams.add({ name: 'SNOOP', subjects: ['_INBOX_coordinator.>'] }));
      await refused('cli: any new stream, unbounded', () => cli.jsm.streams.add({ name: 'MINE', subjects: ['mine.>'] }));
      await refused("cli: changing the coordinator's results consumer", () =>
        cli.jsm.consumers.update(STREAMS.results, 'coordinator-results', { max_deliver: 1 }),
      );
      await refused('cli: an extractor consumer that gives up at once', () =>
        cli.jsm.consumers.add(STREAMS.tasks, { durable_name: extractorConsumer(fp), max_deliver: 1, ack_policy: 'explicit' as never }),
      );
      await refused('cli: pulling a task', async () => (await cli.js.consumers.get(STREAMS.tasks, extractorConsumer(fp))).next({ expires: 1000 }));
      await refused('cli: purging the image store', () => cli.jsm.streams.purge(STREAMS.images));
      await refused('cli: writing a job record', () => cli.jobs.put(victim, new Uint8Array([1]), { timeout: 2000 }));
      await refused('cli: reading the vector cache', () => cli.vectors.get(`${fp}.${'a'.repeat(64)}`));
      await refused("cli: reading the coordinators' task key", () => cli.leases.get('task-key'));
      await refused('worker: listing job ids through stream info', () => worker.jsm.streams.info('KV_graft-jobs', { subjects_filter: '>' }));
      await refused('worker: listing job ids through the results stream', () => worker.jsm.streams.info(STREAMS.results, { subjects_filter: '>' }));
      await refused("worker: reading the coordinators' task key", () => worker.leases.get('task-key'));
      await refused('worker: publishing a manifest', () => worker.js.publish(manifestSubject('evil'), new Uint8Array([1]), { timeout: 2000 }));
      await refused('monitor: publishing a manifest', () => monitor.js.publish(manifestSubject('evil'), new Uint8Array([1]), { timeout: 2000 }));
      await refused('monitor: deleting a stream', () => monitor.jsm.streams.delete(STREAMS.tasks));
      assert.ok(await admin.jsm.streams.info(STREAMS.tasks), 'everything is still there');
      // What each role is for still works: the cli reads a record and publishes, the worker reads the cache's subject counts.
      assert.equal((await readJob(cli, victim))!.state, JobState.JOB_STATE_DONE);
    } finally {
      await monitor.close();
    }
  });

  it('manifest URLs cannot probe the inside network, and errors never quote what a URL or file held', { timeout: 120_000 }, async () => {
    const real = (await readManifest(c.bus, victim))!;
    const cases: [string, string, RegExp][] = [
      ['probe-metrics', `http://127.0.0.1:${metricsPort}/metrics#x`, /127\.0\.0\.1 is a private or local address/],
      ['probe-metadata', 'http://169.254.169.254/latest/meta-data/model.json', /169\.254\.169\.254 is a private or local address/],
      ['probe-name', `http://localhost:${metricsPort}/model.json`, /localhost resolves to (127\.0\.0\.1|::1), a private or local address/],
      ['probe-file', 'file:///etc/passwd', /is not a TF\.js model\.json \(not JSON/],
    ];
    const ids: string[] = [];
    for (const [name, url] of cases) ids.push(await publishManifest(c.bus, codecs.manifest.create({ ...real, backbone: { url } }), `${name}-`));
    for (const [i, [id, , reason]] of cases.entries()) {
      const s = await c.waitForJob(ids[i], 30_000);
      assert.equal(s.state, JobState.JOB_STATE_FAILED, id);
      assert.match(s.error, reason, id);
      assert.doesNotMatch(s.error, /HELP|TYPE|root:x:0:0|graft_/, `${id}: nothing fetched is quoted`);
    }
    assert.equal(await ready(), 200);
  });

  it("an image list cannot upload the publisher's secrets: /proc, paths outside its folder, links out, non-images", { timeout: 60_000 }, async () => {
    const dir = join(c.work, 'listed');
    await mkdir(join(dir, 'photos'), { recursive: true });
    await copyFile(join(data, 'circle', (await readdir(join(data, 'circle')))[0]), join(dir, 'photos', 'ok.jpg'));
    await writeFile(join(dir, 'photos', 'notes.jpg'), 'GRAFT_CLI_PASSWORD=hunter2\n');
    await symlink('/etc/passwd', join(dir, 'photos', 'link.jpg'));
    const list = join(dir, 'list.csv');
    await writeFile(
      list,
      [
        'file_name,label',
        'photos/ok.jpg,circle',
        '/proc/self/environ,circle',
        '../../../../../../etc/passwd,square',
        'photos/link.jpg,square',
        'photos/notes.jpg,square',
      ].join('\n'),
    );
    const before = (await admin.jsm.streams.info(STREAMS.images)).state.messages;
    const r = await runGraft(['publish', list, '--nats', c.url, '--nats-user', 'cli'], {
      GRAFT_NATS_PASSWORD: PASSWORDS.GRAFT_CLI_PASSWORD,
      GRAFT_HOME: c.work,
    });
    assert.equal(r.code, 1, r.output);
    assert.match(r.output, /line 3: \/proc\/self\/environ: is in \/proc, which holds no images/);
    assert.match(r.output, /line 4: .*etc\/passwd: is outside the list's folder/);
    assert.match(r.output, /line 5: photos\/link\.jpg: is outside the list's folder/);
    assert.match(r.output, /line 6: photos\/notes\.jpg: is not an image/);
    assert.equal((await admin.jsm.streams.info(STREAMS.images)).state.messages, before, 'nothing uploaded');
    // Allowing outside paths still never reads /proc, and a file must be an image.
    const wide = await runGraft(['publish', list, '--dry-run', '--allow-outside-paths'], { GRAFT_HOME: c.work });
    assert.match(wide.output, /\/proc\/self\/environ: is in \/proc/);
    assert.match(wide.output, /etc\/passwd: is not an image/);
  });

  it('a NaN vector already in the cache fails the job that would train on it, naming the image', { timeout: 120_000 }, async () => {
    const data3 = await generateSampleSet(join(c.work, 'shapes3'), 3, 25, ['circle', 'square']);
    const first = await publishDataset(c.bus, data3, { progress: false, backbone: model, training: { epochs: 2 } });
    const done = await c.waitForJob(first.jobId, 90_000);
    const m = (await readManifest(c.bus, first.jobId))!;
    await cacheVector(admin, done.backbone!.fingerprint!, m.images[0].sha256, {
      vector: encodeVector(new Float32Array(3).fill(NaN), VectorDType.VECTOR_DTYPE_FLOAT32),
      dim: 3,
      dtype: VectorDType.VECTOR_DTYPE_FLOAT32,
    });
    const s = await c.waitForJob(await publishManifest(c.bus, codecs.manifest.create({ ...m }), 'nan-cached-'), 60_000);
    assert.equal(s.state, JobState.JOB_STATE_FAILED);
    assert.ok(s.error.includes(`the cached vector of ${m.images[0].path} has NaN`), s.error);
  });
});
