import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import sharp from 'sharp';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { connect } from '@nats-io/transport-node';
import { generateSampleSet, publishDataset } from '@graft/cli';
import {
  JobState,
  STREAMS,
  VectorDType,
  WORKER_STREAMS,
  cacheVector,
  codecs,
  encodeVector,
  freePort,
  imageSubjects,
  manifestSubject,
  openBus,
  readJob,
  scanCachedVectors,
} from '@graft/protocol/testing';
import { initBackend } from '@graft/vision';
import { TestCluster, countsOf } from '../../helpers/cluster.js';
import { ROOT } from '../../helpers/fixtures.js';
import { PASSWORDS, deployedAuthorization } from '../../helpers/deploy.js';
import { writeConvModel } from '../../helpers/models.js';
import { runGraft, waitFor } from '../../helpers/process.js';

describe('security - the deployed NATS permissions', () => {
  it('refuse anonymous clients, confine workers, and still run a job; secrets stay out of logs', { timeout: 180_000 }, async () => {
    Object.assign(process.env, PASSWORDS); // nats-server reads the passwords from its environment
    const auth = await deployedAuthorization();
    const c = new TestCluster([], { GRAFT_NATS_USER: 'coordinator', GRAFT_NATS_PASSWORD: PASSWORDS.GRAFT_COORDINATOR_PASSWORD, GRAFT_LOG_LEVEL: 'debug' });
    await c.start({ workers: 0, natsConfig: auth, busUser: { user: 'cli', pass: PASSWORDS.GRAFT_CLI_PASSWORD } });
    try {
      await assert.rejects(connect({ servers: c.url, reconnect: false }), /authorization/i, 'anonymous clients are refused');
      await assert.rejects(connect({ servers: c.url, reconnect: false, user: 'worker', pass: 'wrong' }), /authorization/i);

      // A worker's credentials open the topology, but cannot change or read beyond their job.
      const w = await openBus({ servers: c.url, user: 'worker', pass: PASSWORDS.GRAFT_WORKER_PASSWORD }, { create: false, uses: WORKER_STREAMS });
      try {
        await assert.rejects(w.jsm.streams.delete(STREAMS.tasks), 'workers cannot delete streams');
        await assert.rejects(w.jsm.streams.purge(STREAMS.results), 'workers cannot purge streams');
        await assert.rejects(
          w.js.publish(manifestSubject('evil'), codecs.manifest.encode({ jobId: 'evil' }), { timeout: 2000 }),
          'workers cannot publish manifests',
        );
        await assert.rejects(w.jsm.streams.info('KV_graft-vectors', { subjects_filter: '>' }), 'workers cannot list the vector cache');
        await assert.rejects(w.vectors.put('a.b', new Uint8Array(1)), 'nor write it');
        await assert.rejects(w.js.publish(imageSubjects.record('a'.repeat(64)), new Uint8Array(4), { timeout: 2000 }), 'workers cannot write images');
        await assert.rejects(w.jsm.streams.purge('KV_graft-claims'), 'nor purge the task claims');
        // Claiming a task is a worker's own job.
        await w.claims.create('task-1', new TextEncoder().encode('w'));
        assert.equal(new TextDecoder().decode((await w.claims.get('task-1'))!.value), 'w');
        await w.claims.delete('task-1');
      } finally {
        await w.close();
      }
      assert.ok(await c.bus.jsm.streams.info(STREAMS.tasks), 'the stream is still there');

      // The least privilege is enough to do the work.
      await initBackend();
      await mkdir(join(c.work, 'm'), { recursive: true });
      const model = await writeConvModel(join(c.work, 'm'));
      c.startWorker([], { GRAFT_NATS_USER: 'worker', GRAFT_NATS_PASSWORD: PASSWORDS.GRAFT_WORKER_PASSWORD, GRAFT_LOG_LEVEL: 'trace' });
      const data = await generateSampleSet(join(c.work, 'shapes'), 4, 21, ['circle', 'square']);
      // Phone-sized photos: objects of many chunks, read by direct gets.
      for (const [i, cls] of ['circle', 'square'].entries()) {
        const phone = await sharp(randomBytes(2000 * 1500 * 3), { raw: { width: 2000, height: 1500, channels: 3 } })
          .jpeg({ quality: 95 })
          .toBuffer();
        assert.ok(phone.length > 3_000_000, `${phone.length} bytes`);
        await writeFile(join(data, cls, `phone-${i}.jpg`), phone);
      }
      const p = await publishDataset(c.bus, data, { progress: false, backbone: model, training: { epochs: 3 } });
      const s = await c.waitForJob(p.jobId, 90_000);
      assert.equal(s.state, JobState.JOB_STATE_DONE, `${s.error}\n${c.logs()}`);
      assert.deepEqual(countsOf(s), { total: 10, cached: 0, extracted: 10, failed: 0 });
      const prepared = await c.bus.jsm.streams.info(STREAMS.prepared);
      // Of the photos bigger than their copy at the input size: the two phone photos (the small ones are read as they are).
      assert.equal(prepared.state.messages, 2, `the worker role stores prepared inputs\n${c.logs()}`);
      await assert.rejects(
        openBus({ servers: c.url, user: 'worker', pass: PASSWORDS.GRAFT_WORKER_PASSWORD }, { create: false, uses: WORKER_STREAMS }).then(async (w2) => {
          try {
            await w2.models.putBlob({ name: 'evil/model.json' }, new Uint8Array(4));
          } finally {
            await w2.close();
          }
        }),
        'workers cannot write the model store',
      );

      // Replies are private per role: nobody reads another role's inbox (a coordinator's cache reads).
      const w3 = await openBus({ servers: c.url, user: 'worker', pass: PASSWORDS.GRAFT_WORKER_PASSWORD }, { create: false, uses: WORKER_STREAMS });
      try {
        for (const inbox of ['_INBOX_coordinator.>', '_INBOX.>', '_INBOX_cli.>']) {
          const sub = w3.nc.subscribe(inbox);
          // The server refuses the subscription; the client closes it with that error.
          const ended = await Promise.race([sub.closed, new Promise((r) => setTimeout(() => r('still open'), 5000))]);
          assert.match(String(ended), /permission/i, `a worker cannot subscribe to ${inbox}`);
        }
      } finally {
        await w3.close();
      }
      // The coordinator's role can list the cache's keys (a headers-only consumer delivering to its own inbox).
      const co = await openBus({ servers: c.url, user: 'coordinator', pass: PASSWORDS.GRAFT_COORDINATOR_PASSWORD }, { create: false });
      try {
        const ids = Array.from({ length: 1000 }, (_, i) => i.toString(16).padStart(64, '0'));
        await cacheVector(co, 'feedfacefeedface', ids[7], {
          vector: encodeVector(new Float32Array(1280).fill(1), VectorDType.VECTOR_DTYPE_FLOAT32),
          dim: 1280,
          dtype: VectorDType.VECTOR_DTYPE_FLOAT32,
        });
        const found: string[] = [];
        await scanCachedVectors(co, 'feedfacefeedface', ids, 1280, (id, a) => void (a ? found.push(id) : undefined));
        assert.deepEqual(found, [ids[7]]);
      } finally {
        await co.close();
      }
      // The monitor reads jobs and cannot change them.
      const mon = await openBus({ servers: c.url, user: 'monitor', pass: PASSWORDS.GRAFT_MONITOR_PASSWORD }, { create: false });
      try {
        assert.equal((await readJob(mon, p.jobId))?.state, JobState.JOB_STATE_DONE, 'the monitor reads job records');
        await assert.rejects(mon.jobs.put(p.jobId, new Uint8Array([1, 2, 3]), { timeout: 2000 }), 'the monitor cannot change a job');
        await assert.rejects(mon.jsm.streams.purge(STREAMS.events), 'nor purge anything');
      } finally {
        await mon.close();
      }
      // The CLI publishes (it did, above) but cannot delete or purge streams and buckets.
      await assert.rejects(c.bus.jsm.streams.purge(STREAMS.results), 'the cli cannot purge a stream');
      await assert.rejects(c.bus.jsm.streams.purge('KV_graft-vectors'), 'nor the vector cache');
      await assert.rejects(c.bus.jsm.streams.delete(STREAMS.tasks), 'nor delete a stream');
      await assert.rejects(c.bus.vectors.put('x.y', new Uint8Array(4), { timeout: 2000 }), 'nor write the vector cache');
      assert.equal((await c.bus.jsm.streams.info(STREAMS.results)).config.name, STREAMS.results);

      const logs = c.logs();
      assert.match(logs, /"auth":"user worker"/, 'the logs say who connected');
      for (const secret of Object.values(PASSWORDS)) assert.ok(!logs.includes(secret), 'no password in any log');
    } finally {
      await c.stop();
    }
  });
});

describe('security - TLS with the shipped config', () => {
  it('nats-server-tls.conf serves only TLS: a client without the CA is refused, graft with it works', { timeout: 120_000 }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'graft-tls-'));
    let server: ChildProcess | undefined;
    try {
      // The shipped files, as deployed side by side; only the store and certificate folders move.
      await mkdir(join(dir, 'tls'));
      await writeFile(
        join(dir, 'nats-server.conf'),
        (await readFile(join(ROOT, 'deploy/nats/nats-server.conf'), 'utf8')).replace('store_dir: /data', `store_dir: ${join(dir, 'data')}`),
      );
      await writeFile(
        join(dir, 'nats-server-tls.conf'),
        (await readFile(join(ROOT, 'deploy/nats/nats-server-tls.conf'), 'utf8')).replaceAll('/etc/nats/tls/', `${dir}/tls/`),
      );
      const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: join(dir, 'tls'), stdio: 'ignore' });
      ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=graft-test-ca', '-keyout', 'ca.key', '-out', 'ca.crt');
      ssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=nats', '-keyout', 'server.key', '-out', 'server.csr');
      await writeFile(join(dir, 'tls', 'san.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
      ssl(
        'x509',
        '-req',
        '-in',
        'server.csr',
        '-CA',
        'ca.crt',
        '-CAkey',
        'ca.key',
        '-CAcreateserial',
        '-days',
        '2',
        '-extfile',
        'san.ext',
        '-out',
        'server.crt',
      );
      const [port, monitor] = [await freePort(), await freePort()];
      // Ports on the command line (they override the file): the test's own, not the container's.
      server = spawn('nats-server', ['-c', join(dir, 'nats-server-tls.conf'), '-a', '127.0.0.1', '-p', String(port), '-m', String(monitor)], {
        cwd: dir,
        env: { ...process.env, ...PASSWORDS },
        stdio: 'ignore',
      });
      const url = `nats://127.0.0.1:${port}`;
      const ca = join(dir, 'tls', 'ca.crt');
      const bus = await waitFor(
        () => openBus({ servers: url, user: 'coordinator', pass: PASSWORDS.GRAFT_COORDINATOR_PASSWORD, tls: { caFile: ca } }).catch(() => undefined),
        30_000,
        'the TLS server',
      );
      await bus.close();
      await assert.rejects(
        connect({ servers: url, reconnect: false, user: 'cli', pass: PASSWORDS.GRAFT_CLI_PASSWORD }),
        'no client gets in without trusting the server certificate',
      );
      const cli = await runGraft(['status', '--nats', url, '--nats-user', 'cli'], { GRAFT_NATS_PASSWORD: PASSWORDS.GRAFT_CLI_PASSWORD, GRAFT_NATS_TLS_CA: ca });
      assert.equal(cli.code, 0, `graft with $GRAFT_NATS_TLS_CA connects\n${cli.output}`);
    } finally {
      server?.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  });
});
