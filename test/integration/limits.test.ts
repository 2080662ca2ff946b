import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { generateSampleSet } from '@graft/cli';
import { JobState, STREAMS } from '@graft/protocol/testing';
import { TestCluster } from '../helpers/cluster.js';
import { runGraft } from '../helpers/process.js';

describe('limits - stores with a cap refuse writes plainly, and the run goes on', () => {
  it(
    '--max-bytes caps the stores it names; a full vector cache fails the images it cannot hold, by name, and the job still ends',
    { timeout: 180_000 },
    async () => {
      const c = await new TestCluster(['--max-bytes', 'vectors=4KB,results=64MiB', '--task-size', '4']).start({ workers: 1 });
      try {
        assert.equal((await c.bus.jsm.streams.info('KV_graft-vectors')).config.max_bytes, 4000);
        assert.equal((await c.bus.jsm.streams.info(STREAMS.results)).config.max_bytes, 64 * 1024 ** 2);
        assert.equal((await c.bus.jsm.streams.info(STREAMS.images)).config.max_bytes, -1, 'stores not named keep no cap');
        const model = await c.tinyModel();
        const p = await c.publishShapes(20, 61, { classes: ['circle', 'square'], backbone: model, training: { epochs: 3 } });
        const s = await c.waitForJob(p.jobId, 120_000).catch((err: Error) => {
          throw new Error(`${err.message}\n${c.logs()}`);
        });
        const counts = s.counts!;
        assert.equal((counts.extracted ?? 0) + (counts.failed ?? 0) + (counts.cached ?? 0), 40, 'every image answered');
        assert.ok((counts.failed ?? 0) > 0 && (counts.failed ?? 0) < 40, `some images did not fit: ${JSON.stringify(counts)}\n${c.logs()}`);
        // Refused outright, or (nats-server 2.9 under concurrent writes) acknowledged but not kept: either way named.
        for (const f of s.failures)
          assert.match(
            f.message ?? '',
            /(could not be cached|was not kept by the vector cache after \d+ extractions): the vectors store \(graft-vectors\) is full: raise its limit with graft init --max-bytes vectors=SIZE/,
          );
        assert.ok([JobState.JOB_STATE_DONE, JobState.JOB_STATE_FAILED].includes(s.state), 'the job ended');
        // graft init changes the cap of an existing store when told to.
        const init = await runGraft(['init', '--nats', c.url, '--max-bytes', 'vectors=none'], { GRAFT_HOME: c.work });
        assert.equal(init.code, 0, init.output);
        assert.equal((await c.bus.jsm.streams.info('KV_graft-vectors')).config.max_bytes, -1);
        const bad = await runGraft(['init', '--nats', c.url, '--max-bytes', 'photos=1GB'], { GRAFT_HOME: c.work });
        assert.equal(bad.code, 2);
        assert.match(bad.output, /not STORE=SIZE with STORE one of images, vectors/);
      } finally {
        await c.stop();
      }
    },
  );

  it('a full image store stops graft publish with the store and the way out, before any job starts', { timeout: 120_000 }, async () => {
    const c = await new TestCluster(['--max-bytes', 'images=100KB']).start({ workers: 0 });
    try {
      const data = await generateSampleSet(join(c.work, 'shapes'), 40, 62);
      const r = await runGraft(['publish', data, '--nats', c.url], { GRAFT_HOME: c.work });
      assert.equal(r.code, 1, r.output);
      assert.match(r.output, /cannot upload .*: the images store \(GRAFT_IMAGES\) is full: raise its limit with graft init --max-bytes images=SIZE/);
      const jobs = [];
      for await (const k of await c.bus.jobs.keys()) jobs.push(k);
      assert.deepEqual(jobs, [], 'no job was started');
    } finally {
      await c.stop();
    }
  });
});

describe('limits - the other stores', () => {
  for (const [store, bytes, pattern] of [
    ['models', '1KB', /cannot start: cannot put the backbone where workers load it: the models store \(graft-models\) is full/],
    ['artifacts', '2KB', /training failed: the artifacts store \(graft-artifacts\) is full/],
  ] as const) {
    it(`a full ${store} store fails the job, naming the store and the way out`, { timeout: 120_000 }, async () => {
      const c = await new TestCluster(['--max-bytes', `${store}=${bytes}`]).start({ workers: 1 });
      try {
        const model = await c.tinyModel();
        const p = await c.publishShapes(6, 63, { classes: ['circle', 'square'], backbone: model, training: { epochs: 2 } });
        const s = await c.waitForJob(p.jobId, 90_000);
        assert.equal(s.state, JobState.JOB_STATE_FAILED, c.logs());
        assert.match(s.error ?? '', pattern);
        assert.match(s.error ?? '', new RegExp(`graft init --max-bytes ${store}=SIZE`));
      } finally {
        await c.stop();
      }
    });
  }

  it('a full manifests stream stops graft publish with the store and the way out', { timeout: 60_000 }, async () => {
    const c = await new TestCluster(['--max-bytes', 'manifests=1KB']).start({ workers: 0 });
    try {
      const data = await generateSampleSet(join(c.work, 'shapes'), 30, 64);
      const r = await runGraft(['publish', data, '--nats', c.url], { GRAFT_HOME: c.work });
      assert.equal(r.code, 1, r.output);
      assert.match(
        r.output,
        /cannot publish job \S+: the manifests store \(GRAFT_MANIFESTS\) is full: raise its limit with graft init --max-bytes manifests=SIZE/,
      );
    } finally {
      await c.stop();
    }
  });
});
