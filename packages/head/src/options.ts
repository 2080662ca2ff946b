/** Head training options as users give them: everything optional. */
export interface TrainOptions {
  /** rmsprop (default, as retrain.py's successors use), adam or sgd. */
  optimizer?: 'rmsprop' | 'adam' | 'sgd';
  /** Step size, > 0. Default 0.001 for rmsprop/adam, 0.01 for sgd. */
  learningRate?: number;
  /** Examples per step. Default: the number of classes, at least 32 and at most 256. */
  batchSize?: number;
  /** Maximum epochs, 1 to 10000. Default 100. */
  epochs?: number;
  /** Stop after this many epochs without a better validation accuracy. Default 10; 0 = never. */
  patience?: number;
  /** Shuffling and initialisation seed. Default 1. */
  seed?: number;
  /** Standardise vectors with the training set's per-dimension mean and deviation. Default true. */
  standardize?: boolean;
  /**
   * none (default): every example weighs the same. balanced: each example weighs
   * n / (classes * n_of_its_class), so every class weighs as much in the loss (unbalanced sets).
   */
  classWeights?: 'none' | 'balanced';
  /** L2 penalty on the kernels, added to the loss as weightDecay * sum(w^2). Default 0. */
  weightDecay?: number;
  /** Label smoothing of the cross-entropy targets, 0 to below 1. Default 0. */
  labelSmoothing?: number;
  /** Units of a hidden layer (dense + ReLU + dropout) before the softmax; 0 (default) = none. */
  hiddenUnits?: number;
  /** Dropout rate after the hidden layer, 0 to below 1. Default 0.5 with a hidden layer. */
  dropout?: number;
}

export type ResolvedTrainOptions = Required<TrainOptions>;

/** Every option of a head, by the name the wire's TrainingOptions and a model card's training use too. */
export const TRAIN_OPTION_KEYS = [
  'optimizer',
  'learningRate',
  'batchSize',
  'epochs',
  'patience',
  'seed',
  'standardize',
  'classWeights',
  'weightDecay',
  'labelSmoothing',
  'hiddenUnits',
  'dropout',
] as const satisfies readonly (keyof TrainOptions)[];

/**
 * A head's options from any record naming them by the same keys (a manifest's TrainingOptions, a
 * model card's training): an absent or null one is left for the default (zero is a value, never
 * "unset"); the values are checked by resolveTrainOptions.
 */
export function pickTrainOptions(source: { readonly [K in (typeof TRAIN_OPTION_KEYS)[number]]?: unknown } | null | undefined): TrainOptions {
  const out: Record<string, unknown> = {};
  for (const k of TRAIN_OPTION_KEYS) if (source?.[k] !== undefined && source?.[k] !== null) out[k] = source[k];
  return out as TrainOptions;
}

/** Jobs train one at a time per coordinator: no job may hold it for days. */
const MAX_EPOCHS = 10_000;

/** The optimizers a head trains with (the first is the default). */
export const OPTIMIZERS = ['rmsprop', 'adam', 'sgd'] as const;

/**
 * Fills defaults: only an absent (undefined) option takes its default; 0 is a value
 * (patience 0 = no early stopping, seed 0 = seed 0; epochs, batch size or learning rate 0 are errors).
 * @throws RangeError naming the bad field.
 */
export function resolveTrainOptions(o: TrainOptions, numClasses: number): ResolvedTrainOptions {
  const optimizer = o.optimizer ?? 'rmsprop';
  if (!OPTIMIZERS.includes(optimizer)) throw new RangeError(`optimizer must be one of ${OPTIMIZERS.join(', ')}, got ${JSON.stringify(optimizer)}`);
  const r: ResolvedTrainOptions = {
    optimizer,
    learningRate: o.learningRate ?? (optimizer === 'sgd' ? 0.01 : 0.001),
    batchSize: o.batchSize ?? Math.min(256, Math.max(32, numClasses)),
    epochs: o.epochs ?? 100,
    patience: o.patience ?? 10,
    seed: o.seed ?? 1,
    standardize: o.standardize ?? true,
    classWeights: o.classWeights ?? 'none',
    weightDecay: o.weightDecay ?? 0,
    labelSmoothing: o.labelSmoothing ?? 0,
    hiddenUnits: o.hiddenUnits ?? 0,
    dropout: o.dropout ?? (o.hiddenUnits ? 0.5 : 0),
  };
  if (r.classWeights !== 'none' && r.classWeights !== 'balanced')
    throw new RangeError(`classWeights must be none or balanced, got ${JSON.stringify(r.classWeights)}`);
  if (!(r.learningRate > 0 && r.learningRate < 10)) throw new RangeError(`learningRate must be in (0, 10), got ${r.learningRate}`);
  if (!Number.isInteger(r.batchSize) || r.batchSize < 1) throw new RangeError(`batchSize must be a positive integer, got ${r.batchSize}`);
  if (!Number.isInteger(r.epochs) || r.epochs < 1 || r.epochs > MAX_EPOCHS)
    throw new RangeError(`epochs must be an integer from 1 to ${MAX_EPOCHS}, got ${r.epochs}`);
  if (!Number.isInteger(r.patience) || r.patience < 0) throw new RangeError(`patience must be a non-negative integer, got ${r.patience}`);
  if (!Number.isInteger(r.seed) || r.seed < 0) throw new RangeError(`seed must be a non-negative integer, got ${r.seed}`);
  if (!(r.weightDecay >= 0 && r.weightDecay < 1)) throw new RangeError(`weightDecay must be in [0, 1), got ${r.weightDecay}`);
  if (!(r.labelSmoothing >= 0 && r.labelSmoothing < 1)) throw new RangeError(`labelSmoothing must be in [0, 1), got ${r.labelSmoothing}`);
  if (!Number.isInteger(r.hiddenUnits) || r.hiddenUnits < 0 || r.hiddenUnits > 8192)
    throw new RangeError(`hiddenUnits must be an integer from 0 to 8192, got ${r.hiddenUnits}`);
  if (!(r.dropout >= 0 && r.dropout < 1)) throw new RangeError(`dropout must be in [0, 1), got ${r.dropout}`);
  return r;
}
