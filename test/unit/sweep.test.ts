import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import {
  DEFAULT_SWEEP_GRID,
  Stopped,
  evaluatePredictions,
  expandGrid,
  loadHeadModel,
  packageModel,
  parseSweepGrid,
  pickWinner,
  predict,
  runSweep,
  sharedRows,
  trainHead,
  type HeadDataset,
  type SweepHeadResult,
  type TrainingCheckpoint,
} from '@graft/head';
import { initBackend, type ResolvedBackbone } from '@graft/vision';
import { decodeHalf, encodeHalf } from '@graft/protocol/testing';

/** Three noisy clusters in 24 dimensions: easy but not trivial. */
function clusters(n: number, seed: number, dim = 24): HeadDataset['train'] {
  let s = seed;
  const rnd = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
  const x: Float32Array[] = [];
  const y: number[] = [];
  for (let i = 0; i < n; i++) {
    const c = i % 3;
    const v = new Float32Array(dim);
    for (let j = 0; j < dim; j++) v[j] = (j % 3 === c ? 2 : 0) + 1.5 * rnd() + 10;
    x.push(v);
    y.push(c);
  }
  return { x, y };
}

const data: HeadDataset = { dim: 24, classes: ['a', 'b', 'c'], train: clusters(150, 1), validation: clusters(60, 2) };
const backbone = {
  id: 'custom',
  url: 'file:///m.json',
  bottleneck: '',
  inputSize: 8,
  preprocess: 'unit',
  fingerprint: 'f',
  dim: 24,
  format: 'layers',
} as ResolvedBackbone;

describe('sweep grids', () => {
  it('expands the default grid to 14 heads with stable ids, and takes the job options it does not vary', () => {
    const a = expandGrid(DEFAULT_SWEEP_GRID, { epochs: 40, seed: 3 }, 10);
    const b = expandGrid(DEFAULT_SWEEP_GRID, { epochs: 40, seed: 3 }, 10);
    assert.equal(a.length, 14);
    assert.equal(new Set(a.map((c) => c.id)).size, 14);
    assert.deepEqual(
      a.map((c) => c.id),
      b.map((c) => c.id),
    );
    assert.ok(a.every((c) => c.options.epochs === 40 && c.options.seed === 3));
    assert.notDeepEqual(expandGrid(DEFAULT_SWEEP_GRID, { epochs: 41 }, 10)[0].id, a[0].id, 'other options, other ids');
    // The same head twice is trained once.
    assert.equal(expandGrid([{ learningRate: [0.001] }, { learningRate: [0.001, 0.002] }], {}, 3).length, 2);
  });

  it('reads a grid file and names what is wrong with one', () => {
    assert.deepEqual(parseSweepGrid('{"learningRate": [0.01], "hiddenUnits": [0, 64]}', 'g.json'), [{ learningRate: [0.01], hiddenUnits: [0, 64] }]);
    assert.throws(() => parseSweepGrid('{"momentum": [0.9]}', 'g.json'), /g\.json: entry 1 has "momentum"; a sweep varies optimizer, learningRate/);
    assert.throws(() => parseSweepGrid('[{"learningRate": []}]', 'g.json'), /learningRate must be a non-empty list/);
    assert.throws(() => parseSweepGrid('{"learningRate": ["fast"]}', 'g.json'), /learningRate has "fast"/);
    assert.throws(() => parseSweepGrid('nope', 'g.json'), /g\.json is not JSON/);
    assert.throws(() => expandGrid([{ labelSmoothing: [1.5] }], {}, 3), /labelSmoothing must be in \[0, 1\)/);
  });
});

describe('head options a sweep varies', () => {
  before(() => initBackend({ preferred: 'cpu' }));

  it('a hidden layer (ReLU, dropout) trains, and its exported model (standardisation folded) computes the same probabilities', async () => {
    const head = await trainHead(data, { hiddenUnits: 16, dropout: 0.3, epochs: 30, patience: 0 });
    assert.equal(head.hidden?.units, 16);
    assert.ok(head.history.at(-1)!.valAccuracy > 0.9, `validation accuracy ${head.history.at(-1)!.valAccuracy}`);
    const folder = await packageModel(head, backbone, evaluatePredictions([], [], data.classes));
    const model = await loadHeadModel(folder);
    assert.equal(model.layers.length, 2);
    const got = await predict(model, data.validation.x.slice(0, 5), 24);
    model.dispose();
    // By hand, on standardised inputs, with the trained (unfolded) weights.
    for (let i = 0; i < 5; i++) {
      const x = tf.tensor2d(
        Array.from(data.validation.x[i], (v, j) => (v - head.mean[j]) / head.std[j]),
        [1, 24],
      );
      const h = tf.relu(x.matMul(tf.tensor2d(head.hidden!.kernel, [24, 16])).add(tf.tensor1d(head.hidden!.bias)));
      const p = tf.softmax(h.matMul(tf.tensor2d(head.kernel, [16, 3])).add(tf.tensor1d(head.bias))).dataSync();
      for (let c = 0; c < 3; c++) assert.ok(Math.abs(p[c] - got[i][c]) < 1e-5, `image ${i} class ${c}: ${p[c]} vs ${got[i][c]}`);
    }
  });

  it('a resumed head with dropout follows the same path as one that never stopped', async () => {
    const o = { hiddenUnits: 8, dropout: 0.5, epochs: 8, patience: 0, seed: 5 };
    const full = await trainHead(data, o);
    const saved: TrainingCheckpoint[] = [];
    await trainHead(data, { ...o, epochs: 3 }, { checkpoint: async (c) => void saved.push(c) });
    const resumed = await trainHead(data, o, { resumeFrom: { ...saved.at(-1)!, history: saved.at(-1)!.history.map((h) => ({ ...h, epochs: 8 })) } });
    assert.deepEqual(Array.from(resumed.kernel), Array.from(full.kernel));
    assert.deepEqual(Array.from(resumed.hidden!.kernel), Array.from(full.hidden!.kernel));
  });

  it('weight decay shrinks the weights; label smoothing makes the head less sure', async () => {
    const norm = (k: Float32Array) => Math.sqrt(k.reduce((a, v) => a + v * v, 0));
    const plain = await trainHead(data, { epochs: 25, patience: 0 });
    const decayed = await trainHead(data, { epochs: 25, patience: 0, weightDecay: 0.5 });
    assert.ok(norm(decayed.kernel) < 0.8 * norm(plain.kernel), `${norm(decayed.kernel)} vs ${norm(plain.kernel)}`);
    const smooth = await trainHead(data, { epochs: 25, patience: 0, labelSmoothing: 0.3 });
    const confidence = async (h: typeof plain) => {
      const m = await loadHeadModel(await packageModel(h, backbone, evaluatePredictions([], [], data.classes)));
      const p = await predict(m, data.validation.x, 24);
      m.dispose();
      return p.reduce((a, q) => a + Math.max(...q), 0) / p.length;
    };
    const [cs, cp] = [await confidence(smooth), await confidence(plain)];
    assert.ok(cs < cp - 0.01, `mean top probability ${cs} with smoothing, ${cp} without`);
  });
});

describe('runSweep', () => {
  before(() => initBackend({ preferred: 'wasm' }));
  const grid = [
    { learningRate: [0.0003, 0.003], labelSmoothing: [0, 0.1] },
    { hiddenUnits: [16], optimizer: ['adam' as const] },
  ];
  const configs = expandGrid(grid, { epochs: 12, patience: 0 }, 3);

  it('trains every head on worker threads, as on one thread, and picks the best on validation', async () => {
    const threads = await runSweep(data, configs, { parallel: 2 });
    const one = await runSweep(data, configs, { parallel: 1 });
    assert.deepEqual(
      threads.map((r) => r.id),
      configs.map((c) => c.id),
    );
    assert.deepEqual(
      threads.map((r) => r.valAccuracy),
      one.map((r) => r.valAccuracy),
      'deterministic: the same heads either way',
    );
    const w = pickWinner(threads);
    assert.ok(threads.every((r) => r.valAccuracy < w.valAccuracy || (r.valAccuracy === w.valAccuracy && r.valLoss >= w.valLoss)));
    assert.ok(threads.every((r) => r.head.history.length === 12));
  });

  it('half-float rows (a float16 job) go to the threads as half floats: the same heads as floats of the same values', async () => {
    const half = (s: HeadDataset['train']) => ({ x: s.x.map((v) => encodeHalf(v)), y: s.y });
    const h16: HeadDataset = { ...data, train: half(data.train), validation: half(data.validation) };
    const h32: HeadDataset = {
      ...h16,
      train: { x: h16.train.x.map((r) => decodeHalf(r as Uint16Array)), y: h16.train.y },
      validation: { x: h16.validation.x.map((r) => decodeHalf(r as Uint16Array)), y: h16.validation.y },
    };
    const shared = sharedRows(h16.train.x, data.dim);
    assert.equal(shared.half, true);
    assert.equal(shared.buffer.byteLength, h16.train.x.length * data.dim * 2, 'two bytes a value');
    const a = await runSweep(h16, configs.slice(0, 2), { parallel: 2 });
    const b = await runSweep(h32, configs.slice(0, 2), { parallel: 2 });
    assert.deepEqual(
      a.map((r) => [r.valAccuracy, r.valLoss]),
      b.map((r) => [r.valAccuracy, r.valLoss]),
    );
  });

  it('does not train the heads it is given as done, and stops between heads when asked', async () => {
    const first = await runSweep(data, configs.slice(0, 2), { parallel: 1 });
    const done = new Map<string, SweepHeadResult>(first.map((r) => [r.id, r]));
    const trained: string[] = [];
    const all = await runSweep(data, configs, { parallel: 2, done, onHead: async (r) => void (!r.restored && trained.push(r.id)) });
    assert.deepEqual(
      trained.sort(),
      configs
        .slice(2)
        .map((c) => c.id)
        .sort(),
    );
    assert.equal(all.filter((r) => r.restored).length, 2);
    let heads = 0;
    await assert.rejects(runSweep(data, configs, { parallel: 1, onHead: async () => void heads++, shouldStop: () => heads >= 1 }), Stopped);
    assert.equal(heads, 1);
  });
});
