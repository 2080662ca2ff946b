import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pickTrainOptions as headOptions } from '@graft/head';
import { splitOf, splitPercents } from '@graft/protocol/testing';
import { resolveTrainOptions } from '@graft/head';
import { Split, codecs, type TrainingOptions } from '@graft/protocol/testing';
import { backboneRequest, requestedSpec, resolvedFields, resolvedFromFields, type ResolvedBackbone } from '@graft/vision';

/** Training options as the coordinator sees them: through the wire. */
function overTheWire(t: TrainingOptions): TrainingOptions {
  const m = codecs.manifest.decode(codecs.manifest.encode({ jobId: 'j', training: t }));
  return m.training!;
}

describe('options - zero is a value, absent is the default', () => {
  it('every training option survives the wire at 0 and stays absent when unset', () => {
    const zeros = overTheWire({
      learningRate: 0,
      batchSize: 0,
      epochs: 0,
      patience: 0,
      validationPercent: 0,
      testPercent: 0,
      seed: 0,
      standardize: false,
      optimizer: '',
    });
    for (const k of ['learningRate', 'batchSize', 'epochs', 'patience', 'validationPercent', 'testPercent', 'seed'] as const) {
      assert.equal(zeros[k], 0, `${k} = 0 arrives as 0`);
    }
    assert.equal(zeros.standardize, false);
    assert.equal(zeros.optimizer, '');
    const unset = overTheWire({});
    for (const k of [
      'optimizer',
      'learningRate',
      'batchSize',
      'epochs',
      'patience',
      'validationPercent',
      'testPercent',
      'seed',
      'standardize',
      'classWeights',
    ] as const) {
      assert.equal(unset[k] ?? undefined, undefined, `${k} unset arrives unset`);
    }
  });

  it('the head takes each unset option from its defaults and each 0 as 0 (or refuses it)', () => {
    const d = resolveTrainOptions(headOptions(overTheWire({})), 10);
    assert.deepEqual(d, {
      optimizer: 'rmsprop',
      learningRate: 0.001,
      batchSize: 32,
      epochs: 100,
      patience: 10,
      seed: 1,
      standardize: true,
      classWeights: 'none',
      weightDecay: 0,
      labelSmoothing: 0,
      hiddenUnits: 0,
      dropout: 0,
    });
    // Zero regularisation travels as zero; a hidden layer gets dropout 0.5 unless told.
    const r = resolveTrainOptions(headOptions(overTheWire({ weightDecay: 0, labelSmoothing: 0, hiddenUnits: 64 })), 10);
    assert.deepEqual([r.weightDecay, r.labelSmoothing, r.hiddenUnits, r.dropout], [0, 0, 64, 0.5]);
    assert.equal(resolveTrainOptions(headOptions(overTheWire({ hiddenUnits: 64, dropout: 0 })), 10).dropout, 0, 'dropout 0 is 0');
    assert.equal(resolveTrainOptions(headOptions(overTheWire({ classWeights: 'balanced' })), 10).classWeights, 'balanced');
    assert.throws(() => resolveTrainOptions(headOptions(overTheWire({ classWeights: 'heavy' })), 10), /classWeights must be none or balanced/);
    const z = resolveTrainOptions(headOptions(overTheWire({ patience: 0, seed: 0, standardize: false })), 10);
    assert.equal(z.patience, 0, 'patience 0 = no early stopping');
    assert.equal(z.seed, 0, 'seed 0 is seed 0, not 1');
    assert.equal(z.standardize, false);
    assert.throws(() => resolveTrainOptions(headOptions(overTheWire({ epochs: 0 })), 10), /epochs must be an integer from 1/);
    assert.throws(() => resolveTrainOptions(headOptions(overTheWire({ batchSize: 0 })), 10), /batchSize must be a positive integer/);
    assert.throws(() => resolveTrainOptions(headOptions(overTheWire({ learningRate: 0 })), 10), /learningRate must be in/);
    assert.throws(() => resolveTrainOptions(headOptions(overTheWire({ optimizer: '' })), 10), /optimizer must be one of/);
    assert.throws(
      () => resolveTrainOptions(headOptions(overTheWire({ epochs: 10_001 })), 10),
      /epochs must be an integer from 1 to 10000/,
      'no job holds the trainer for days',
    );
  });

  it('validation and test percentages at 0 put every image in training; unset holds out 10 % each', () => {
    const paths = Array.from({ length: 2000 }, (_, i) => `c/p${i}.jpg`);
    const none = splitPercents(overTheWire({ validationPercent: 0, testPercent: 0 }));
    assert.deepEqual(none, { validationPercent: 0, testPercent: 0 });
    assert.ok(paths.every((path) => splitOf({ path, split: Split.SPLIT_UNSPECIFIED }, none) === 'train'));
    const dflt = splitPercents(overTheWire({}));
    assert.deepEqual(dflt, { validationPercent: 10, testPercent: 10 });
    const test = paths.filter((path) => splitOf({ path, split: Split.SPLIT_UNSPECIFIED }, dflt) === 'test').length;
    assert.ok(test > 150 && test < 250, `${test} test images of 2000`);
    assert.equal(splitOf({ path: 'c/p1.jpg', split: Split.SPLIT_TEST }, none), 'test', 'a fixed split wins');
  });
});

describe('options - one backbone record', () => {
  const resolved: ResolvedBackbone = {
    id: 'custom',
    url: 'file:///m/model.json',
    bottleneck: '',
    inputSize: 64,
    preprocess: 'symmetric',
    fingerprint: '0123456789abcdef',
    dim: 32,
    format: 'layers',
  };

  it('a named backbone travels by name, a path as custom with its URL; overrides only when given', () => {
    assert.deepEqual(backboneRequest('auto'), { id: 'auto', url: '' });
    assert.deepEqual(backboneRequest('mobilenet_v2', { inputSize: 192 }), { id: 'mobilenet_v2', url: '', inputSize: 192 });
    const custom = backboneRequest('/m/model.json', { bottleneck: '', preprocess: 'none' });
    assert.deepEqual(custom, { id: 'custom', url: 'file:///m/model.json', bottleneck: '', preprocess: 'none' });
    assert.throws(() => backboneRequest('no_such_model'), /unknown backbone/);
  });

  it('a request survives the wire and names the same spec; "" is an override, absent is not', () => {
    const wire = (r: object) => codecs.manifest.decode(codecs.manifest.encode({ jobId: 'j', backbone: r })).backbone!;
    const spec = requestedSpec(wire(backboneRequest('inception_v3_mixed5')));
    assert.equal(spec.bottleneck, 'mixed5', "the catalogue's bottleneck when none is given");
    assert.equal(requestedSpec(wire(backboneRequest('inception_v3_mixed5', { bottleneck: '' }))).bottleneck, '', 'an empty override means the model output');
    const c = requestedSpec(wire(backboneRequest('/m/model.json', { inputSize: 96 })));
    assert.deepEqual([c.id, c.url, c.inputSize, c.preprocess], ['custom', 'file:///m/model.json', 96, 'unit']);
  });

  it('a resolved backbone maps to its record and back unchanged, and an unresolved one is refused', () => {
    const wire = codecs.task.decode(codecs.task.encode({ jobId: 'j', taskId: 't', backbone: resolvedFields(resolved) })).backbone!;
    assert.deepEqual(resolvedFromFields(wire), resolved);
    assert.deepEqual(resolvedFromFields(resolvedFields({ ...resolved, id: 'auto' })).id, 'auto');
    assert.throws(() => resolvedFromFields({ id: 'auto' }), /not resolved/);
  });
});
