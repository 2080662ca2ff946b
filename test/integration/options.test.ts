import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { generateSampleSet } from '@graft/cli';
import { JobState, STREAMS, codecs, manifestSubject } from '@graft/protocol/testing';
import { initBackend } from '@graft/vision';
import { TestCluster } from '../helpers/cluster.js';
import { writeTinyModel } from '../helpers/models.js';
import { runGraft } from '../helpers/process.js';

describe('options - what the user types is what trains', () => {
  it(
    'graft publish with --test-percent 0 --validation-percent 0 --seed 0 --patience 0 trains on every image, for every epoch',
    { timeout: 180_000 },
    async () => {
      await initBackend();
      const c = await new TestCluster().start({ workers: 1 });
      try {
        const dir = join(c.work, 'model');
        await mkdir(dir, { recursive: true });
        const model = await writeTinyModel(dir);
        const data = await generateSampleSet(join(c.work, 'shapes'), 10, 5, ['circle', 'square']);
        const publish = (extra: string[]) =>
          runGraft(['publish', data, '--nats', c.url, '--backbone', model, '--epochs', '4', ...extra], { GRAFT_HOME: c.work });

        const zero = await publish(['--test-percent', '0', '--validation-percent', '0', '--seed', '0', '--patience', '0']);
        assert.equal(zero.code, 0, zero.output);
        const jobId = zero.output.trim().split('\n').at(-1)!;
        const stored = await c.bus.jsm.streams.getMessage(STREAMS.manifests, { last_by_subj: manifestSubject(jobId) });
        const t = codecs.manifest.decode(stored!.data).training!;
        assert.deepEqual([t.testPercent, t.validationPercent, t.seed, t.patience, t.epochs], [0, 0, 0, 0, 4], 'the manifest carries each 0 the user typed');
        assert.equal(t.learningRate ?? undefined, undefined, 'and nothing the user did not type');
        const s = await c.waitForJob(jobId, 120_000);
        assert.equal(s.state, JobState.JOB_STATE_DONE, `${s.error}\n${c.logs()}`);
        assert.deepEqual([s.evaluation!.trainImages, s.evaluation!.validationImages, s.evaluation!.testImages ?? 0], [20, 0, 0], 'nothing held out');
        assert.equal(s.training!.epoch, 4, 'patience 0: no early stopping');

        const dflt = await publish([]);
        assert.equal(dflt.code, 0, dflt.output);
        const d = await c.waitForJob(dflt.output.trim().split('\n').at(-1)!, 120_000);
        assert.equal(d.state, JobState.JOB_STATE_DONE, d.error);
        assert.ok((d.evaluation!.testImages ?? 0) + (d.evaluation!.validationImages ?? 0) > 0, 'unset percentages hold images out');
      } finally {
        await c.stop();
      }
    },
  );
});
