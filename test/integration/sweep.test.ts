import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { generateSampleSet, publishDataset } from '@graft/cli';
import { expandGrid, parseSweepGrid, type EvaluationReport, type ModelCard } from '@graft/head';
import { JobState, artifactNames, freePort } from '@graft/protocol/testing';
import { TestCluster, countsOf } from '../helpers/cluster.js';
import { runGraft, waitFor } from '../helpers/process.js';

/*
 * Sweeps through the real cluster: graft train --sweep, graft sweep JOB (no backbone call), and a
 * coordinator killed mid-sweep whose successor trains only the heads still missing.
 */

const GRID = JSON.stringify([
  { learningRate: [0.0003, 0.003], labelSmoothing: [0, 0.1] },
  { optimizer: ['adam'], hiddenUnits: [32] },
]);

describe('sweeps of heads over cached vectors', () => {
  let metricsPort: number;
  let c: TestCluster;
  let data: string;
  let grid: string;

  before(async () => {
    metricsPort = await freePort();
    c = new TestCluster(['--metrics-port', String(metricsPort)]);
    await c.start({ workers: 1 });
    data = await generateSampleSet(join(c.work, 'shapes'), 12, 5, ['circle', 'square', 'triangle']);
    grid = join(c.work, 'grid.json');
    await writeFile(grid, GRID);
  });
  after(() => c.stop());

  it('graft train --sweep trains the grid, exports the best head on validation and reports the table', async () => {
    const model = await c.tinyModel(8);
    const out = join(c.work, 'swept');
    const r = await runGraft(
      ['train', data, '--nats', c.url, '--backbone', model, '--sweep', '--sweep-grid', grid, '--epochs', '20', '--patience', '0', '--out', out, '--no-bundle'],
      { GRAFT_HOME: c.work },
    );
    assert.equal(r.code, 0, r.output + c.logs());
    assert.match(r.output, /sweep: 5 heads in [\d.]+ s/);
    assert.match(r.output, /^sweep +5\/5 heads trained, best validation [\d.]+%$/m, 'the summary counts heads as heads');
    assert.doesNotMatch(r.output, /^training +epoch/m, "not as epochs with the last head's loss");
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as EvaluationReport;
    const heads = report.sweep!.heads;
    assert.equal(heads.length, 5);
    const best = heads.reduce((a, h) => (h.valAccuracy > a.valAccuracy || (h.valAccuracy === a.valAccuracy && h.valLoss < a.valLoss) ? h : a));
    assert.equal(report.sweep!.winner, best.id);
    const manifest = JSON.parse(await readFile(join(out, 'graft.json'), 'utf8')) as ModelCard;
    assert.equal(manifest.training.learningRate, best.learningRate, 'the exported head is the winner');
    assert.equal(manifest.training.hiddenUnits, best.hiddenUnits);
    assert.match(await readFile(join(out, 'report.html'), 'utf8'), /<section id="sweep">/);
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    assert.match(metrics, /^graft_sweep_heads_trained_total 5$/m);
    assert.doesNotMatch(metrics, /^graft_sweep_best_validation_accuracy_ratio /m, 'a training gauge: cleared once the sweep has ended');
  });

  it('graft sweep JOB sweeps a finished job with no backbone call', async () => {
    const model = await c.tinyModel(8);
    const p = await publishDataset(c.bus, data, { progress: false, backbone: model, training: { epochs: 5 } });
    assert.equal((await c.waitForJob(p.jobId, 120_000)).state, JobState.JOB_STATE_DONE);
    // The model file is gone: the browser bundle is built from the backbone in the cluster's model store.
    await rm(dirname(fileURLToPath(model)), { recursive: true, force: true });
    const out = join(c.work, 'from-job');
    const r = await runGraft(['sweep', p.jobId, '--nats', c.url, '--sweep-grid', grid, '--out', out], { GRAFT_HOME: c.work });
    assert.equal(r.code, 0, r.output);
    assert.match(r.output, /browser bundle: .*layers-model/);
    assert.ok(existsSync(join(out, 'web', 'model.json')));
    const id = /job (j\w+): a sweep of heads over job/.exec(r.output)![1];
    const s = await c.waitForJob(id, 10_000);
    assert.deepEqual(countsOf(s), { total: 36, cached: 36, extracted: 0, failed: 0 }, 'every vector came from the cache');
    assert.equal((JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as EvaluationReport).sweep!.heads.length, 5);
  });

  it('a coordinator killed mid-sweep: its successor trains only the heads not yet stored', async () => {
    const model = await c.tinyModel(8);
    // Heads long enough that the kill lands between them.
    const training = { epochs: 400, patience: 0, sweep: true, sweepGrid: GRID };
    const p = await publishDataset(c.bus, data, { progress: false, backbone: model, training });
    const ids = expandGrid(parseSweepGrid(GRID, 'grid'), { epochs: 400, patience: 0 }, 3).map((x) => x.id);
    const stored = async () =>
      (await Promise.all(ids.map((i) => c.bus.artifacts.info(artifactNames.sweepHead(p.jobId, i))))).filter((x) => x && !x.deleted).length;
    await waitFor(async () => (await stored()) >= 1, 180_000, 'a first sweep head to be stored');
    c.coordinator!.child.kill('SIGKILL');
    await c.coordinator!.exited;
    const before = await stored();
    assert.ok(before < ids.length, `killed mid-sweep (${before} of ${ids.length} stored)`);
    const next = c.startCoordinator();
    const s = await c.waitForJob(p.jobId, 300_000);
    assert.equal(s.state, JobState.JOB_STATE_DONE, next.output());
    const log = next.output();
    const restored = (log.match(/"msg":"sweep head restored"/g) ?? []).length;
    const trained = (log.match(/"msg":"sweep head trained"/g) ?? []).length;
    assert.ok(restored >= before, `restored ${restored}, stored before the kill ${before}`);
    assert.equal(restored + trained, ids.length, 'no finished head trained again');
    assert.equal(await stored(), 0, 'sweep heads are deleted once the model is stored');
  });
});
