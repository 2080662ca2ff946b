import type { EpochMetrics } from '@graft/protocol/wire';
import type { ResolvedTrainOptions } from './options.js';
import type { VectorRow } from './rows.js';

/* What a head is trained on and what training gives back. */

export interface LabelledVectors {
  x: VectorRow[];
  y: number[];
}

export interface HeadDataset {
  dim: number;
  classes: string[];
  train: LabelledVectors;
  validation: LabelledVectors;
}

/** One epoch's figures: the wire's EpochMetrics, every field set. */
export type EpochResult = { [K in Exclude<keyof EpochMetrics, '$unknowns'>]-?: NonNullable<EpochMetrics[K]> };

/** Plain tensors: a checkpoint holds nothing tf-specific so it can be stored anywhere. */
export interface SavedTensor {
  name: string;
  shape: number[];
  values: Float32Array;
}

/** Everything needed to continue training exactly where it stopped. */
export interface TrainingCheckpoint {
  epoch: number;
  weights: SavedTensor[];
  optimizer: SavedTensor[];
  bestValAccuracy: number;
  bestValLoss: number;
  bestEpoch: number;
  bestWeights: SavedTensor[];
  epochsWithoutImprovement: number;
  history: EpochResult[];
}

/** A trained softmax head on standardised inputs. */
export interface TrainedHead {
  dim: number;
  classes: string[];
  /** The softmax layer: [dim or hidden units, classes] row-major. */
  kernel: Float32Array;
  bias: Float32Array;
  /** The hidden layer (dense + ReLU; dropout only in training), when the options asked for one: kernel [dim, units]. */
  hidden?: { kernel: Float32Array; bias: Float32Array; units: number };
  mean: Float32Array;
  std: Float32Array;
  options: ResolvedTrainOptions;
  history: EpochResult[];
  bestEpoch: number;
  stoppedEarly: boolean;
}
