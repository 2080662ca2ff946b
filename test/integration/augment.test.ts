import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateSampleSet, publishDataset, scanDataset } from '@graft/cli';
import { splitOf, splitPercents } from '@graft/protocol/testing';
import { JobState, artifactNames, freePort, vectorKey, type JobStatus } from '@graft/protocol/testing';
import { augmentedId } from '@graft/vision';
import { TestCluster, countsOf } from '../helpers/cluster.js';

/*
 * Augmented copies through the real cluster: computed by the worker in the same tasks as the
 * photos, cached by (backbone, spec, variant, photo), never for validation or test images, and
 * a rerun (or more copies, or another spec) computes only what is not cached.
 */

const aug = (s: JobStatus) => ({
  total: s.augmented?.total ?? 0,
  cached: s.augmented?.cached ?? 0,
  extracted: s.augmented?.extracted ?? 0,
  failed: s.augmented?.failed ?? 0,
});

describe('augmented copies of training images, computed by workers and cached', () => {
  let c: TestCluster;
  let port: number;
  let data: string;
  let model: string;
  const training = { epochs: 3, validationPercent: 20, testPercent: 20 };
  let trainShas: string[];
  let heldOutShas: string[];

  const metric = async (name: string) =>
    Number(new RegExp(`^${name} (\\d+)`, 'm').exec(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text())?.[1] ?? NaN);

  before(async () => {
    port = await freePort();
    c = new TestCluster();
    await c.start();
    c.startWorker(['--metrics-port', String(port)]);
    data = await generateSampleSet(join(c.work, 'shapes'), 10, 9, ['circle', 'square', 'triangle']);
    model = await c.tinyModel(16);
    const scan = await scanDataset(data);
    const percents = splitPercents(training);
    trainShas = scan.images.filter((i) => splitOf({ path: i.path, split: 0 }, percents) === 'train').map((i) => i.sha256);
    heldOutShas = scan.images.filter((i) => splitOf({ path: i.path, split: 0 }, percents) !== 'train').map((i) => i.sha256);
    assert.ok(trainShas.length > 10 && heldOutShas.length > 3);
  });
  after(() => c.stop());

  it('computes K copies of each training image only, counts them apart and trains on them', async () => {
    const p = await publishDataset(c.bus, data, { progress: false, backbone: model, training: { ...training, augment: 'crop-flip', augmentCopies: 2 } });
    const s = await c.waitForJob(p.jobId, 120_000);
    assert.equal(s.state, JobState.JOB_STATE_DONE, c.logs());
    assert.deepEqual(countsOf(s), { total: 30, cached: 0, extracted: 30, failed: 0 });
    assert.deepEqual(aug(s), { total: 2 * trainShas.length, cached: 0, extracted: 2 * trainShas.length, failed: 0 });
    assert.equal(await metric('graft_augmented_images_extracted_total'), 2 * trainShas.length);
    assert.equal(await metric('graft_images_extracted_total'), 30, 'photos are counted apart from copies');
    const fp = s.backbone!.fingerprint!;
    for (const sha of trainShas)
      for (const k of [0, 1])
        assert.ok(await c.bus.vectors.get(vectorKey(fp, augmentedId(sha, 'crop-flip', k))), 'a training copy is cached under its own key');
    for (const sha of heldOutShas)
      assert.equal(await c.bus.vectors.get(vectorKey(fp, augmentedId(sha, 'crop-flip', 0))), null, 'validation and test images are never augmented');
    const plain = await c.bus.vectors.get(vectorKey(fp, trainShas[0]));
    const copy = await c.bus.vectors.get(vectorKey(fp, augmentedId(trainShas[0], 'crop-flip', 0)));
    assert.notDeepEqual(plain!.value, copy!.value, 'a copy is not its photo');
    const report = JSON.parse(Buffer.from((await c.bus.artifacts.getBlob(artifactNames.modelFile(p.jobId, 'report.json')))!).toString());
    assert.equal(report.splits.augmented, 2 * trainShas.length);
    assert.equal(report.splits.train, trainShas.length);
  });

  it('a second run costs no backbone call; more copies or another spec compute only what is new', async () => {
    const calls = await metric('graft_backbone_calls_total');
    const again = await c.waitForJob(
      (await publishDataset(c.bus, data, { progress: false, backbone: model, training: { ...training, augment: 'crop-flip', augmentCopies: 2 } })).jobId,
      120_000,
    );
    assert.deepEqual(aug(again), { total: 2 * trainShas.length, cached: 2 * trainShas.length, extracted: 0, failed: 0 });
    assert.equal(await metric('graft_backbone_calls_total'), calls, 'no backbone call');
    const more = await c.waitForJob(
      (await publishDataset(c.bus, data, { progress: false, backbone: model, training: { ...training, augment: 'crop-flip', augmentCopies: 3 } })).jobId,
      120_000,
    );
    assert.deepEqual(aug(more), { total: 3 * trainShas.length, cached: 2 * trainShas.length, extracted: trainShas.length, failed: 0 });
    const other = await c.waitForJob(
      (await publishDataset(c.bus, data, { progress: false, backbone: model, training: { ...training, augment: 'flip', augmentCopies: 1 } })).jobId,
      120_000,
    );
    assert.deepEqual(aug(other), { total: trainShas.length, cached: 0, extracted: trainShas.length, failed: 0 }, 'another spec shares no cache entry');
    assert.equal(countsOf(other).cached, 30);
  });

  it('refuses a manifest whose augmentation is not one graft knows', async () => {
    const p = await publishDataset(c.bus, data, { progress: false, backbone: model, training: { ...training, augment: 'rotate', augmentCopies: 2 } });
    const s = await c.waitForJob(p.jobId, 60_000);
    assert.equal(s.state, JobState.JOB_STATE_FAILED);
    assert.match(s.error, /unknown augmentation "rotate"/);
  });
});
