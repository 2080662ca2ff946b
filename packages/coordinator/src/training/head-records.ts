import { codecs, type Checkpoint, type NamedTensor, type SweepHead } from '@graft/protocol';
import type { ResolvedTrainOptions, SavedTensor, SweepHeadResult, TrainingCheckpoint } from '@graft/head';

/* A head's training state and a sweep's finished heads as the artifacts store keeps them (proto), and back. */

export function sweepHeadToProto(r: SweepHeadResult): SweepHead {
  const h = r.head;
  const C = h.classes.length;
  const inputs = h.hidden ? h.hidden.units : h.dim;
  const weights = [
    ...(h.hidden
      ? [
          toProto({ name: 'hidden_kernel', shape: [h.dim, h.hidden.units], values: h.hidden.kernel }),
          toProto({ name: 'hidden_bias', shape: [h.hidden.units], values: h.hidden.bias }),
        ]
      : []),
    toProto({ name: 'kernel', shape: [inputs, C], values: h.kernel }),
    toProto({ name: 'bias', shape: [C], values: h.bias }),
  ];
  return codecs.sweepHead.create({
    configId: r.id,
    optionsJson: JSON.stringify(r.options),
    valAccuracy: r.valAccuracy,
    valLoss: r.valLoss,
    bestEpoch: h.bestEpoch,
    epochs: h.history.length,
    stoppedEarly: h.stoppedEarly,
    seconds: r.seconds,
    weights,
    mean: toProto({ name: 'mean', shape: [h.dim], values: h.mean }),
    std: toProto({ name: 'std', shape: [h.dim], values: h.std }),
    history: h.history,
  }) as SweepHead;
}

export function sweepHeadFromProto(m: SweepHead, dim: number, classes: string[]): SweepHeadResult {
  const w = new Map(m.weights.map((t) => [t.name, Float32Array.from(t.values)]));
  const options = JSON.parse(m.optionsJson) as ResolvedTrainOptions;
  const hidden = w.get('hidden_kernel') ? { kernel: w.get('hidden_kernel')!, bias: w.get('hidden_bias')!, units: options.hiddenUnits } : undefined;
  return {
    id: m.configId,
    options,
    valAccuracy: m.valAccuracy,
    valLoss: m.valLoss,
    seconds: m.seconds,
    head: {
      dim,
      classes,
      kernel: w.get('kernel')!,
      bias: w.get('bias')!,
      ...(hidden ? { hidden } : {}),
      mean: Float32Array.from(m.mean.values),
      std: Float32Array.from(m.std.values),
      options,
      history: m.history.map((h) => ({ epoch: h.epoch, epochs: h.epochs, loss: h.loss, accuracy: h.accuracy, valLoss: h.valLoss, valAccuracy: h.valAccuracy })),
      bestEpoch: m.bestEpoch,
      stoppedEarly: m.stoppedEarly,
    },
  };
}

function toProto(t: SavedTensor): NamedTensor {
  return { name: t.name, shape: t.shape, values: Array.from(t.values) };
}

function fromProto(t: NamedTensor): SavedTensor {
  return { name: t.name ?? '', shape: t.shape ?? [], values: Float32Array.from(t.values ?? []) };
}

/** A head's checkpoint as stored. */
export function checkpointToProto(c: TrainingCheckpoint): Omit<Parameters<typeof codecs.checkpoint.encode>[0], 'jobId'> {
  return {
    epoch: c.epoch,
    weights: c.weights.map(toProto),
    optimizer: c.optimizer.map(toProto),
    bestValAccuracy: c.bestValAccuracy,
    bestValLoss: c.bestValLoss,
    bestEpoch: c.bestEpoch,
    bestWeights: c.bestWeights.map(toProto),
    epochsWithoutImprovement: c.epochsWithoutImprovement,
    history: c.history,
  };
}

/** A stored checkpoint as the head resumes from it. */
export function checkpointFromProto(c: Checkpoint): TrainingCheckpoint {
  return {
    epoch: c.epoch,
    weights: c.weights.map(fromProto),
    optimizer: c.optimizer.map(fromProto),
    bestValAccuracy: c.bestValAccuracy,
    bestValLoss: c.bestValLoss,
    bestEpoch: c.bestEpoch,
    bestWeights: c.bestWeights.map(fromProto),
    epochsWithoutImprovement: c.epochsWithoutImprovement,
    history: c.history.map((h) => ({ epoch: h.epoch, epochs: h.epochs, loss: h.loss, accuracy: h.accuracy, valLoss: h.valLoss, valAccuracy: h.valAccuracy })),
  };
}
