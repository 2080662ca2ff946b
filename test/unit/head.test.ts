import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import {
  evaluatePredictions,
  headProbabilities,
  loadHeadModel,
  outOfSampleProbabilities,
  packageModel,
  predict,
  rowBytes,
  trainHead,
  unitRows,
  type HeadDataset,
  type TrainingCheckpoint,
} from '@graft/head';
import { decodeHalf, encodeHalf } from '@graft/protocol/testing';
import { initBackend, type ResolvedBackbone } from '@graft/vision';

/** Gaussian blobs around class centres: linearly separable, with an offset and scale standardisation must handle. */
function blobs(perClass: number, classes: number, dim: number, seed: number) {
  let s = seed;
  const rand = () => (s = (s * 16807) % 2147483647) / 2147483647;
  const gauss = () => Math.sqrt(-2 * Math.log(rand() + 1e-12)) * Math.cos(2 * Math.PI * rand());
  const x: Float32Array[] = [];
  const y: number[] = [];
  for (let c = 0; c < classes; c++) {
    for (let i = 0; i < perClass; i++) {
      const v = new Float32Array(dim);
      for (let j = 0; j < dim; j++) v[j] = 50 + 10 * (j % classes === c ? 1.5 : 0) + 3 * gauss();
      x.push(v);
      y.push(c);
    }
  }
  return { x, y };
}

const backbone: ResolvedBackbone = {
  id: 'test',
  url: 'file:///x',
  bottleneck: '',
  inputSize: 8,
  preprocess: 'unit',
  fingerprint: '0123456789abcdef',
  dim: 12,
  format: 'layers',
};

describe('head - training', () => {
  const data: HeadDataset = { dim: 12, classes: ['a', 'b', 'c'], train: blobs(40, 3, 12, 1), validation: blobs(10, 3, 12, 2) };
  before(() => initBackend());

  it('learns separable classes and leaks no tensors', async () => {
    const start = tf.memory().numTensors;
    const head = await trainHead(data, { epochs: 30, patience: 0 });
    assert.equal(tf.memory().numTensors, start);
    const last = head.history.at(-1)!;
    assert.ok(last.valAccuracy > 0.9, `validation accuracy ${last.valAccuracy}`);
    assert.ok(head.history[0].loss > last.loss, 'loss goes down');
  });

  it('holds the vectors once, as rows: no tensor of the whole set lives while it trains, and scoring a set larger than one pass agrees with the labels', async () => {
    const big: HeadDataset = { dim: 64, classes: ['a', 'b', 'c'], train: blobs(3000, 3, 64, 3), validation: blobs(1500, 3, 64, 4) };
    const setBytes = big.train.x.length * 64 * 4;
    const between: number[] = [];
    const head = await trainHead(big, { epochs: 2, patience: 0 }, { onEpoch: () => void between.push(tf.memory().numBytes) });
    assert.ok(Math.max(...between) < setBytes / 4, `tensors between epochs: ${Math.max(...between)} bytes, the training set is ${setBytes}`);
    // 4,500 validation rows: scored in more than one pass of 4,096.
    assert.ok(head.history.at(-1)!.valAccuracy > 0.9, `validation accuracy ${head.history.at(-1)!.valAccuracy}`);
  });

  it('half-float rows (a float16 job) train, score and predict exactly as floats of the same values, in half the bytes', async () => {
    const half = { x: data.train.x.map((v) => encodeHalf(v)), y: data.train.y };
    const halfVal = { x: data.validation.x.map((v) => encodeHalf(v)), y: data.validation.y };
    const asFloats = (rows: Uint16Array[]) => rows.map((r) => decodeHalf(r));
    const h16: HeadDataset = { ...data, train: half, validation: halfVal };
    const h32: HeadDataset = { ...data, train: { x: asFloats(half.x), y: half.y }, validation: { x: asFloats(halfVal.x), y: halfVal.y } };
    assert.equal(rowBytes(h16.train.x) * 2, rowBytes(h32.train.x));
    const a = await trainHead(h16, { epochs: 5, patience: 0, seed: 3 });
    const b = await trainHead(h32, { epochs: 5, patience: 0, seed: 3 });
    assert.deepEqual(a.history, b.history, 'the same path, epoch for epoch');
    assert.ok(a.history.at(-1)!.valAccuracy > 0.9);
    assert.deepEqual(headProbabilities(a, h16.validation.x), headProbabilities(b, h32.validation.x));
    assert.deepEqual(unitRows(h16.validation.x, 12), unitRows(h32.validation.x, 12));
    const model = await loadHeadModel(await packageModel(a, backbone, evaluatePredictions([], [], data.classes)));
    assert.deepEqual(await predict(model, h16.validation.x, 12), await predict(model, h32.validation.x, 12));
    model.dispose();
    const labels = [...h16.train.y];
    const folds = { epochs: 2, patience: 0, seed: 1 };
    assert.deepEqual(
      await outOfSampleProbabilities(h16.train.x, labels, 12, data.classes, 3, folds, { parallel: 2 }),
      await outOfSampleProbabilities(h32.train.x, labels, 12, data.classes, 3, folds, { parallel: 2 }),
    );
  });

  it('resumes from a checkpoint onto the same path as an uninterrupted run', async () => {
    const full = await trainHead(data, { epochs: 12, patience: 0, seed: 7 });
    const saved: TrainingCheckpoint[] = [];
    await trainHead(data, { epochs: 5, patience: 0, seed: 7 }, { checkpoint: async (c) => void saved.push(c) });
    const resumed = await trainHead(
      data,
      { epochs: 12, patience: 0, seed: 7 },
      { resumeFrom: { ...saved.at(-1)!, history: saved.at(-1)!.history.map((h) => ({ ...h, epochs: 12 })) } },
    );
    assert.equal(resumed.history.length, 12);
    for (let i = 0; i < full.kernel.length; i++)
      assert.ok(Math.abs(full.kernel[i] - resumed.kernel[i]) < 1e-4, `kernel[${i}] ${full.kernel[i]} vs ${resumed.kernel[i]}`);
    assert.ok(Math.abs(full.history[11].loss - resumed.history[11].loss) < 1e-4);
  });

  it('an early-stopped run resumed from its last checkpoint trains no further epoch', async () => {
    // Validation labels the training set cannot predict: validation stops improving early.
    const noisy: HeadDataset = { ...data, validation: { x: data.validation.x, y: data.validation.y.map((y, i) => (y + 1 + (i % 2)) % 3) } };
    const saved: TrainingCheckpoint[] = [];
    const stopped = await trainHead(noisy, { epochs: 200, patience: 2, seed: 3 }, { checkpoint: async (c) => void saved.push(c) });
    assert.ok(stopped.stoppedEarly, `stopped early after ${stopped.history.length} epochs`);
    const resumed = await trainHead(
      noisy,
      { epochs: 200, patience: 2, seed: 3 },
      { resumeFrom: saved.at(-1)!, checkpoint: async () => assert.fail('no epoch should run') },
    );
    assert.equal(resumed.history.length, stopped.history.length);
    assert.equal(resumed.bestEpoch, stopped.bestEpoch);
    assert.ok(resumed.stoppedEarly);
    assert.deepEqual(Array.from(resumed.kernel), Array.from(stopped.kernel));
  });

  it('balanced class weights lift the recall of a rare class', async () => {
    // Two overlapping classes, 20:1 in training: unweighted, the rare one is almost never predicted.
    let seed = 5;
    const rand = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
    const gauss = () => Math.sqrt(-2 * Math.log(rand() + 1e-12)) * Math.cos(2 * Math.PI * rand());
    const sample = (c: number, n: number) => Array.from({ length: n }, () => Float32Array.from({ length: 4 }, () => c * 0.5 + gauss()));
    const set = (a: number, b: number) => ({ x: [...sample(0, a), ...sample(1, b)], y: [...new Array<number>(a).fill(0), ...new Array<number>(b).fill(1)] });
    const unbalanced: HeadDataset = { dim: 4, classes: ['common', 'rare'], train: set(400, 20), validation: set(100, 100) };
    const recall = async (classWeights: 'none' | 'balanced') => {
      const head = await trainHead(unbalanced, { epochs: 40, patience: 0, classWeights });
      const folder = await packageModel(head, { ...backbone, dim: 4 }, evaluatePredictions([], [], unbalanced.classes));
      const model = await loadHeadModel(folder);
      const r = evaluatePredictions(await predict(model, unbalanced.validation.x, 4), unbalanced.validation.y, unbalanced.classes, unbalanced.train.y);
      model.dispose();
      assert.equal(r.perClass[1].trainImages, 20, 'the report shows the imbalance');
      return r.perClass[1].accuracy;
    };
    const none = await recall('none');
    const balanced = await recall('balanced');
    assert.ok(balanced > none + 0.2, `rare-class recall ${none} unweighted, ${balanced} balanced`);
  });

  it('exports a model with standardisation folded in that predicts like the trained head', async () => {
    const head = await trainHead(data, { epochs: 15, patience: 0 });
    const folder = await packageModel(head, backbone, evaluatePredictions([], [], data.classes));
    const model = await loadHeadModel(folder);
    const probs = await predict(model, data.validation.x, 12);
    const report = evaluatePredictions(probs, data.validation.y, data.classes);
    assert.ok(report.top1 > 0.9, `top-1 ${report.top1}`);
    assert.equal(folder.card.backbone.fingerprint, backbone.fingerprint);
    model.dispose();
  });
});

describe('head - evaluation', () => {
  it('computes top-1, top-k, per-class accuracy and the confusion matrix', () => {
    const p = (a: number[]) => Float32Array.from(a);
    const r = evaluatePredictions([p([0.7, 0.2, 0.1]), p([0.5, 0.4, 0.1]), p([0.1, 0.3, 0.6]), p([0.2, 0.5, 0.3])], [0, 1, 2, 2], ['x', 'y', 'z']);
    assert.equal(r.top1, 0.5);
    assert.equal(r.topK, 3);
    assert.equal(r.topKAccuracy, 1);
    assert.deepEqual(r.confusion, [
      [1, 0, 0],
      [1, 0, 0],
      [0, 1, 1],
    ]);
    assert.deepEqual(
      r.perClass.map((c) => c.accuracy),
      [1, 0, 0.5],
    );
  });
});
