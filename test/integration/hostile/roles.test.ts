import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { headers as natsHeaders } from '@nats-io/transport-node';
import { generateSampleSet, publishDataset, scanDataset } from '@graft/cli';
import {
  ErrorCode,
  JobState,
  STREAMS,
  WORKER_STREAMS,
  bindJobId,
  claimProof,
  codecs,
  extractorConsumer,
  freePort,
  imageSubjects,
  manifestSubject,
  openBus,
  pageHash,
  pagesDigest,
  publishManifest,
  putImage,
  readCachedVector,
  readImage,
  readJob,
  readManifest,
  readManifestHeader,
  resultSubject,
  type BusHandles as Bus,
  type ExtractionTask,
  type JsMsg,
} from '@graft/protocol/testing';
import { tensorflow } from '@graft/vision';
import { TestCluster, countsOf } from '../../helpers/cluster.js';
import { PASSWORDS, deployedAuthorization } from '../../helpers/deploy.js';
import { runGraft, waitFor } from '../../helpers/process.js';

/*
 * What a role could still do to others on the shipped config (issue "Hostile inputs, part two"),
 * each attack run as that role against deploy/nats/nats-server.conf and a cluster with its deployed
 * defaults: the cli and a worker written to hurt cannot wipe, rewrite or squat what others stored,
 * stall or hijack their jobs, or take the coordinator's memory; the cluster goes on serving.
 */

const ROLE_ENV = { GRAFT_NATS_USER: 'coordinator', GRAFT_NATS_PASSWORD: PASSWORDS.GRAFT_COORDINATOR_PASSWORD };
const WORKER_ENV = { GRAFT_NATS_USER: 'worker', GRAFT_NATS_PASSWORD: PASSWORDS.GRAFT_WORKER_PASSWORD };

/** Messages of a stream (read as the coordinator, which may). */
const messages = async (admin: Bus, stream: string) => (await admin.jsm.streams.info(stream)).state.messages;

describe('hostile roles, part two (the deployed config)', () => {
  let c: TestCluster;
  let admin: Bus;
  let worker: Bus;
  let metricsPort: number;
  let model: string;

  /** The coordinator's graft_images_lost_total. */
  const lost = async () => Number(/^graft_images_lost_total (\S+)$/m.exec(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text())?.[1] ?? NaN);

  /** A job of `n` photos a class (tasks of 8), published as the cli, with no worker running yet; its fingerprint once started. */
  const job = async (name: string, n: number, seed: number, training = { epochs: 2 }) => {
    const data = await generateSampleSet(join(c.work, name), n, seed, ['circle', 'square']);
    const p = await publishDataset(c.bus, data, { progress: false, backbone: model, training });
    const fp = (await waitFor(async () => (await readJob(c.bus, p.jobId))?.backbone?.fingerprint, 30_000, `${name} to start`))!;
    return { ...p, data, fp };
  };

  /** Pulls one task as the worker role. */
  const pull = async (fp: string): Promise<{ msg: JsMsg; task: ExtractionTask }> => {
    const consumer = await worker.js.consumers.get(STREAMS.tasks, extractorConsumer(fp));
    const msg = (await consumer.next({ expires: 10_000 }))!;
    assert.ok(msg, 'a task to pull');
    return { msg, task: codecs.task.decode(msg.data) };
  };

  const stopWorkers = async () => {
    for (const w of c.workers) await w.stop(10_000);
  };

  before(async () => {
    Object.assign(process.env, PASSWORDS); // nats-server reads the passwords from its environment
    metricsPort = await freePort();
    // Lost tasks are looked for every 2 s here (30 s deployed): the same code, sooner.
    c = new TestCluster(['--metrics-port', String(metricsPort), '--task-size', '8', '--reconcile-interval', '2000'], ROLE_ENV);
    await c.start({ workers: 0, natsConfig: await deployedAuthorization(), busUser: { user: 'cli', pass: PASSWORDS.GRAFT_CLI_PASSWORD } });
    admin = await openBus({ servers: c.url, user: 'coordinator', pass: PASSWORDS.GRAFT_COORDINATOR_PASSWORD }, { create: false });
    worker = await openBus({ servers: c.url, user: 'worker', pass: PASSWORDS.GRAFT_WORKER_PASSWORD }, { create: false, uses: WORKER_STREAMS });
    model = await c.tinyModel();
  });
  beforeEach(stopWorkers); // each attack starts with no honest worker running
  after(async () => {
    await worker?.close();
    await admin?.close();
    await c?.stop();
  });

  it('1. a rollup header from the cli (image store) or a worker (claims) purges nothing', { timeout: 120_000 }, async () => {
    const a = await job('roll', 4, 101);
    const photos = await messages(admin, STREAMS.images);
    assert.ok(photos >= 16, `${photos} image messages`);
    const rollup = natsHeaders();
    rollup.set('Nats-Rollup', 'all');
    const sha = createHash('sha256').update('rollup').digest('hex');
    await assert.rejects(c.bus.js.publish(imageSubjects.record(sha), new Uint8Array(1), { headers: rollup }), /rollup/i, 'the image store takes no rollup');
    await assert.rejects(
      c.bus.js.publish(`$O.graft-images.M.x`, new Uint8Array(1), { headers: rollup, timeout: 2000 }),
      "no object store subject is the cli's",
    );
    await worker.claims.put('mine', new Uint8Array([1]));
    await assert.rejects(
      worker.js.publish('$KV.graft-claims.anything', new Uint8Array(1), { headers: rollup }),
      /rollup/i,
      'the claims bucket takes no rollup',
    );
    assert.equal(await messages(admin, STREAMS.images), photos, 'every photo is still there');
    assert.ok(await worker.claims.get('mine'), 'and every claim');
    c.startWorker([], WORKER_ENV);
    assert.equal((await c.waitForJob(a.jobId, 60_000)).state, JobState.JOB_STATE_DONE, c.logs());
    await stopWorkers();
  });

  it('2. a worker that acks tasks without answering (pulled, or by sequence unpulled) stalls no job', { timeout: 240_000 }, async () => {
    // (b) Every queued task acknowledged by its stream sequence, never pulled.
    const b = await job('acked', 8, 102);
    const info = await worker.jsm.streams.info(STREAMS.tasks);
    const lost0 = await lost();
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++)
      worker.nc.publish(`$JS.ACK.${STREAMS.tasks}.${extractorConsumer(b.fp)}.1.${seq}.${seq}.${Date.now()}000000.0`, new TextEncoder().encode('+ACK'));
    await worker.nc.flush();
    await waitFor(
      async () => (await admin.jsm.consumers.info(STREAMS.tasks, extractorConsumer(b.fp))).num_pending === 0,
      30_000,
      'the queue to be emptied by the forged acks',
    );
    c.startWorker([], WORKER_ENV);
    const sb = await c.waitForJob(b.jobId, 90_000);
    assert.equal(sb.state, JobState.JOB_STATE_DONE, `${sb.error}\n${c.logs()}`);
    assert.deepEqual(countsOf(sb), { total: 16, cached: 0, extracted: 16, failed: 0 });
    assert.ok((await lost()) >= lost0 + 16, 'the lost images were found and enqueued again');
    assert.match(c.coordinator!.output(), /images on no queue and in no answer .*: enqueued again/);

    // (a) A worker pulling tasks and acking them unanswered, next to an honest one.
    await stopWorkers();
    const a = await job('pulled', 16, 103);
    let stolen = 0;
    let stop = false;
    const rogue = (async () => {
      const consumer = await worker.js.consumers.get(STREAMS.tasks, extractorConsumer(a.fp));
      while (!stop) {
        const m = await consumer.next({ expires: 1000 }).catch(() => null);
        if (m) {
          stolen++;
          m.ack();
        }
      }
    })();
    await waitFor(async () => stolen > 0, 30_000, 'the rogue worker to take a task');
    c.startWorker([], WORKER_ENV);
    const sa = await c
      .waitForJob(a.jobId, 150_000)
      .catch((err: Error) => {
        throw new Error(`${err.message}: stolen ${stolen}\n${c.logs()}`);
      })
      .finally(() => (stop = true));
    await rogue;
    assert.equal(sa.state, JobState.JOB_STATE_DONE, `${sa.error}\n${c.logs()}`);
    assert.deepEqual(countsOf(sa), { total: 32, cached: 0, extracted: 32, failed: 0 });
    assert.ok(stolen > 0, 'the rogue worker took tasks');
    await stopWorkers();
  });

  it("3. a worker publishing first under a task's result ids gets no honest answer dropped", { timeout: 120_000 }, async () => {
    const j = await job('dedup', 4, 104);
    const { msg, task } = await pull(j.fp);
    // Every id the answer could have been deduplicated under before: the task id, and one derived from its token.
    for (const msgID of [task.taskId, `${task.taskId}.${claimProof(task.token, 'answered')}`])
      await worker.js.publish(resultSubject(task.jobId), new Uint8Array([0xff, 0x01]), { msgID });
    msg.nak();
    const lost0 = await lost();
    c.startWorker([], WORKER_ENV);
    const s = await c.waitForJob(j.jobId, 60_000);
    assert.equal(s.state, JobState.JOB_STATE_DONE, `${s.error}\n${c.logs()}`);
    assert.deepEqual(countsOf(s), { total: 8, cached: 0, extracted: 8, failed: 0 });
    assert.equal(await lost(), lost0, 'the honest answer arrived: nothing had to be found lost');
    await stopWorkers();
  });

  it("4. the cli cannot rewrite, delete or break a stored photo's record", { timeout: 120_000 }, async () => {
    const j = await job('records', 4, 105);
    const victim = j.scan.images[0];
    const other = j.scan.images[1];
    const record = imageSubjects.record(victim.sha256);
    for (const forged of [
      new Uint8Array([0x7b, 0x7d]),
      codecs.storedImage.encode({ size: other.sizeBytes, chunks: 1, sha256: Buffer.from(other.sha256, 'hex') }),
    ]) {
      await assert.rejects(c.bus.js.publish(record, forged), /maximum messages per subject/, 'a stored record is never replaced');
    }
    await assert.rejects(c.bus.jsm.streams.deleteMessage(STREAMS.images, 1), 'nor deleted');
    await assert.rejects(c.bus.js.publish(imageSubjects.chunk(victim.sha256, 0), new Uint8Array(10)), /maximum messages per subject/, 'nor its bytes');
    assert.ok((await readImage(admin, victim.sha256)).ok);
    c.startWorker([], WORKER_ENV);
    const s = await c.waitForJob(j.jobId, 60_000);
    assert.deepEqual(countsOf(s), { total: 8, cached: 0, extracted: 8, failed: 0 }, c.logs());
    await stopWorkers();
  });

  it(
    '5. a worker\'s "cannot decode" for a photo nobody can read is never cached: the photo is repaired and extracted later',
    { timeout: 180_000 },
    async () => {
      const data = await generateSampleSet(join(c.work, 'decode'), 2, 106, ['circle', 'square']);
      const scan = await scanDataset(data);
      const victim = scan.images[0];
      // The cli writes a malformed record under the photo's name before its owner uploads it.
      await c.bus.js.publish(imageSubjects.record(victim.sha256), new Uint8Array([0xff, 0xff]));
      const p = await publishDataset(c.bus, data, { progress: false, backbone: model, training: { epochs: 2 } });
      const fp = (await waitFor(async () => (await readJob(c.bus, p.jobId))?.backbone?.fingerprint, 30_000, 'the job to start'))!;
      // The rogue worker answers the task: every photo "cannot be decoded".
      const { msg, task } = await pull(fp);
      const lie = task.imageSha256.map((sha) => ({ sha256: sha, errorCode: ErrorCode.ERROR_CODE_DECODE_FAILED, errorMessage: 'forged' }));
      await worker.js.publish(
        resultSubject(task.jobId),
        codecs.vectorBatch.encode({ jobId: task.jobId, taskId: task.taskId, taskToken: task.token, workerId: 'evil', backboneFingerprint: fp, vectors: lie }),
      );
      msg.ack();
      c.startWorker([], WORKER_ENV);
      const s = await c.waitForJob(p.jobId, 90_000);
      assert.equal(s.state, JobState.JOB_STATE_DONE, `${s.error}\n${c.logs()}`);
      assert.deepEqual(
        countsOf(s),
        { total: 4, cached: 0, extracted: 3, failed: 1 },
        'the unreadable photo fails this job; the lies about the others are refused',
      );
      assert.equal(s.failures[0].path, victim.path);
      assert.equal(await readCachedVector(admin, fp, victim.sha256), undefined, 'no failure cached that the coordinator could not confirm');
      await waitFor(
        async () => !(await readImage(admin, victim.sha256).then((r) => !r.ok && r.problem === 'corrupt')),
        30_000,
        'the corrupt photo to be removed',
      );
      // The owner publishes again: the real photo is uploaded and extracted.
      const again = await publishDataset(c.bus, data, { progress: false, backbone: model, training: { epochs: 2 } });
      assert.equal(again.uploaded, 1);
      const t = await c.waitForJob(again.jobId, 60_000);
      assert.deepEqual(countsOf(t), { total: 4, cached: 3, extracted: 1, failed: 0 }, c.logs());
      await stopWorkers();
    },
  );

  it('6. an audit id squatted with flipped labels is not followed, nor a block: graft audit runs the real audit', { timeout: 240_000 }, async () => {
    const j = await job('audited', 8, 107);
    c.startWorker([], WORKER_ENV);
    assert.equal((await c.waitForJob(j.jobId, 60_000)).state, JobState.JOB_STATE_DONE);
    // The audit's id is made from the job and the options: the attacker computes it as graft does,
    // and publishes under it the same audit with four labels flipped.
    const full = (await readManifest(c.bus, j.jobId))!;
    const audit = codecs.manifest.create({
      ...full,
      jobId: '',
      idNonce: '',
      imagePages: 0,
      imageCount: 0,
      pagesSha256: new Uint8Array(0),
      training: { ...full.training, audit: true, auditFolds: 2 },
    });
    const honest = bindJobId(`${j.jobId}-audit-k2-`, audit);
    const flipped = full.images.map((img, i) => (i < 4 ? { ...img, label: img.label === 'circle' ? 'square' : 'circle' } : img));
    await c.bus.js.publish(manifestSubject(honest.jobId), codecs.manifest.encode({ ...honest, images: flipped }));
    const r = await runGraft(['audit', j.jobId, '--folds', '2', '--nats', c.url, '--nats-user', 'cli', '--out', join(c.work, 'audit-out')], {
      GRAFT_NATS_PASSWORD: PASSWORDS.GRAFT_CLI_PASSWORD,
      GRAFT_HOME: c.work,
    });
    assert.equal(r.code, 0, r.output);
    const id = /job (\S+): auditing job/.exec(r.output)?.[1];
    assert.ok(id, r.output);
    const audited = (await readManifest(c.bus, id))!;
    assert.deepEqual(
      audited.images.map((i) => i.label),
      full.images.map((i) => i.label),
      "the victim's labels, none flipped",
    );
    assert.equal((await readJob(c.bus, id))!.state, JobState.JOB_STATE_DONE);
    assert.match(c.coordinator!.output(), new RegExp(`job id ${honest.jobId} is not the digest of this manifest's content`), 'the squatted header was refused');
  });

  it(
    '7. a few hundred bytes of GraphDef declaring gigabytes of constants are refused before they are allocated, by graft inspect and by the coordinator',
    { timeout: 120_000 },
    async () => {
      const DT_FLOAT = tensorflow.DataType.DT_FLOAT;
      const bomb = tensorflow.GraphDef.encode(
        tensorflow.GraphDef.fromObject({
          node: [
            { name: 'input', op: 'Placeholder', attr: { dtype: { type: DT_FLOAT } } },
            {
              name: 'w',
              op: 'Const',
              attr: {
                dtype: { type: DT_FLOAT },
                value: { tensor: { dtype: DT_FLOAT, tensorShape: { dim: [{ size: 60000 }, { size: 60000 }] }, floatVal: [1] } },
              },
            },
            { name: 'out', op: 'MatMul', input: ['input', 'w'], attr: { T: { type: DT_FLOAT } } },
          ],
        }),
      ).finish();
      assert.ok(bomb.byteLength < 400, `${bomb.byteLength} bytes`);
      const file = join(c.work, 'bomb.pb');
      await writeFile(file, bomb);
      const inspect = await runGraft(['inspect', file], { GRAFT_HOME: c.work });
      assert.equal(inspect.code, 1, inspect.output);
      assert.match(inspect.output, /its constants would fill more than 64\.0 MiB .*node w: shape \[60000,60000\] from 1 values/);
      // Uploaded as a backbone (the cli checks it too: the blob goes straight to the store here).
      const sha = createHash('sha256').update(bomb).digest('hex');
      await putImage(c.bus, { name: sha, description: 'bomb.pb' }, bomb);
      const real = (await readManifest(c.bus, (await job('bombed', 2, 108)).jobId))!;
      const id = await publishManifest(
        c.bus,
        codecs.manifest.create({ ...real, backbone: { id: 'custom', url: 'file:///m/bomb.pb', uploadSha256: sha } }),
        'bomb-',
      );
      const s = await c.waitForJob(id, 60_000);
      assert.equal(s.state, JobState.JOB_STATE_FAILED);
      assert.match(s.error, /its constants would fill more than/);
      assert.equal(c.coordinator!.child.exitCode, null, 'the coordinator is alive');
    },
  );

  it(
    '8. a giant manifest of photos never uploaded is refused with a short list, and does not hold up the job published after it',
    { timeout: 240_000 },
    async () => {
      const real = (await readManifest(c.bus, (await job('small', 2, 109)).jobId))!;
      const long = 'x'.repeat(1990);
      const images = Array.from({ length: 20_000 }, (_, i) => ({
        path: `${long}/${i}.jpg`,
        label: i % 2 ? 'circle' : 'square',
        sha256: createHash('sha256').update(`never ${i}`).digest('hex'),
        sizeBytes: 1000,
      }));
      const giant = await publishManifest(c.bus, codecs.manifest.create({ ...real, images }), 'giant-');
      const small = await job('after-giant', 2, 110);
      c.startWorker([], WORKER_ENV);
      let smallFirst: boolean | undefined;
      const s = await c.waitForJob(giant, 120_000, async () => {
        smallFirst ??=
          (await readJob(c.bus, small.jobId))?.state === JobState.JOB_STATE_EXTRACTING || (await readJob(c.bus, small.jobId))?.state === JobState.JOB_STATE_DONE
            ? true
            : undefined;
      });
      assert.equal(s.state, JobState.JOB_STATE_FAILED);
      const listed = s.error.match(/not in the image store/g) ?? [];
      assert.ok(listed.length > 0 && listed.length <= 100, `${listed.length} paths listed`);
      assert.ok(s.error.length < 64 * 1024, `an error of ${s.error.length} characters`);
      assert.equal((await c.waitForJob(small.jobId, 60_000)).state, JobState.JOB_STATE_DONE);
      assert.equal(smallFirst, true, 'the small job started while the giant one was being read');
      await stopWorkers();
    },
  );

  it(
    "9. a header raced in under another publisher's paged job id is refused and removed; the owner's header then runs the job",
    { timeout: 120_000 },
    async () => {
      const real = (await readManifest(c.bus, (await job('race', 4, 111)).jobId))!;
      // The owner's pages are out; its header is not yet.
      const pages = [real.images.slice(0, 4), real.images.slice(4)].map((images, page) => codecs.manifestPage.encode({ page, images }));
      const owner = bindJobId(
        'race-',
        codecs.manifest.create({
          ...real,
          images: [],
          idNonce: 'n1',
          training: { epochs: 2 },
          imagePages: 2,
          imageCount: real.images.length,
          pagesSha256: pagesDigest(pages.map(pageHash)),
        }),
      );
      for (const [i, page] of pages.entries()) await c.bus.js.publish(`graft.manifest-pages.${owner.jobId}.${i}`, page);
      // Another cli user lists the page subjects, sees the id, and publishes a header of its own options first.
      const seen = Object.keys((await c.bus.jsm.streams.info(STREAMS.manifestPages, { subjects_filter: 'graft.manifest-pages.*.*' })).state.subjects ?? {});
      assert.ok(seen.includes(`graft.manifest-pages.${owner.jobId}.0`));
      await c.bus.js.publish(manifestSubject(owner.jobId), codecs.manifest.encode({ ...owner, training: { epochs: 50, learningRate: 5 } }));
      await waitFor(async () => !(await readManifestHeader(c.bus, owner.jobId)), 30_000, 'the raced header to be removed');
      assert.equal(await readJob(c.bus, owner.jobId), undefined, "no record under the owner's id");
      assert.match(c.coordinator!.output(), /is not the digest of this manifest's content/);
      await c.bus.js.publish(manifestSubject(owner.jobId), codecs.manifest.encode(owner));
      c.startWorker([], WORKER_ENV);
      const s = await c.waitForJob(owner.jobId, 60_000);
      assert.equal(s.state, JobState.JOB_STATE_DONE, `${s.error}\n${c.logs()}`);
      assert.equal(s.training?.epoch, 2, "the owner's options ran");
      await stopWorkers();
    },
  );

  it("10. no role but the coordinator creates a consumer: none left behind, none delivering into graft's subjects", { timeout: 60_000 }, async () => {
    const monitor = await openBus({ servers: c.url, user: 'monitor', pass: PASSWORDS.GRAFT_MONITOR_PASSWORD }, { create: false, uses: [] });
    const stores = ['OBJ_graft-artifacts', 'OBJ_graft-models', 'KV_graft-jobs', STREAMS.events, STREAMS.images];
    const consumers = async () => {
      const made = [];
      for (const stream of stores) for await (const ci of admin.jsm.consumers.list(stream)) made.push(`${stream}/${ci.name}`);
      return made.sort();
    };
    const before = await consumers();
    try {
      const refused = (what: string, op: () => Promise<unknown>) => assert.rejects(op(), Error, what);
      await refused('cli: a durable consumer on the artifacts', () =>
        c.bus.jsm.consumers.add('OBJ_graft-artifacts', { durable_name: 'mine', ack_policy: 'none' as never }),
      );
      await refused('cli: an ordered read of the job records', async () => {
        for await (const _ of await c.bus.jobs.keys()) void _;
      });
      await refused('cli: a push consumer delivering into the job events', () =>
        c.bus.jsm.consumers.add(STREAMS.events, { deliver_subject: 'graft.events.forged', ack_policy: 'none' as never }),
      );
      await refused('worker: a consumer on the models', () =>
        worker.jsm.consumers.add('OBJ_graft-models', { durable_name: 'mine', ack_policy: 'none' as never }),
      );
      await refused('monitor: a consumer on the job records', () =>
        monitor.jsm.consumers.add('KV_graft-jobs', { durable_name: 'mine', ack_policy: 'none' as never }),
      );
      assert.deepEqual(await consumers(), before, 'no consumer made on any store the other roles read');
    } finally {
      await monitor.close();
    }
  });

  it("11. a worker's dead-letter flood evicts only its own kind, and no worker lists what the stores hold", { timeout: 180_000 }, async () => {
    const manifests = await messages(admin, STREAMS.deadLetters);
    const results = await messages(admin, STREAMS.resultDeadLetters);
    assert.ok(manifests > 0 && results > 0, `dead letters of each kind from the tests before: ${manifests}, ${results}`);
    const junk = new Uint8Array(64);
    for (let i = 0; i < 10_001; i++) worker.nc.publish('graft.deadletters.task', junk);
    await worker.nc.flush();
    await waitFor(async () => (await messages(admin, STREAMS.taskDeadLetters)) >= 10_000, 30_000, 'the flood to land');
    assert.equal(await messages(admin, STREAMS.deadLetters), manifests, "the manifests' dead letters are all kept");
    assert.equal(await messages(admin, STREAMS.resultDeadLetters), results, "the results' too");
    for (const stream of ['KV_graft-vectors', STREAMS.images, 'KV_graft-claims', 'OBJ_graft-models']) {
      await assert.rejects(worker.jsm.streams.info(stream, { subjects_filter: '>' }), Error, `worker: listing ${stream}`);
    }
    // What a worker needs still works: its queue's info, a claim, a cached vector's presence by key.
    assert.ok(await worker.jsm.streams.info(STREAMS.tasks));
  });
});
