import { HeadTraining } from './head-training.js';
import { Stopped } from './stop.js';
import { resolveTrainOptions, type TrainOptions } from './options.js';
import type { EpochResult, HeadDataset, TrainedHead, TrainingCheckpoint } from './head-types.js';

export { balancedWeights, moments, seededRandom } from './head-training.js';
export type { LabelledVectors, HeadDataset, EpochResult, SavedTensor, TrainingCheckpoint, TrainedHead } from './head-types.js';

/** Vectors and their class indices. */
export interface TrainHooks {
  /** After each epoch, before its checkpoint. */
  onEpoch?: (r: EpochResult) => void | Promise<void>;
  /** Called after each epoch with the state to persist. */
  checkpoint?: (c: TrainingCheckpoint) => Promise<void>;
  /** Resume from this state instead of starting afresh. */
  resumeFrom?: TrainingCheckpoint;
  /** Checked between epochs: stop (throwing Stopped) when true; the last checkpoint holds the progress. */
  shouldStop?: () => boolean;
}

/**
 * Trains a [dim, classes] softmax layer with early stopping on validation accuracy
 * (the best epoch's weights are kept). Deterministic for a seed, so a resumed run
 * follows the same path as one that never stopped.
 * @throws RangeError for bad options or an empty training set.
 */
export async function trainHead(data: HeadDataset, options: TrainOptions = {}, hooks: TrainHooks = {}): Promise<TrainedHead> {
  const opts = resolveTrainOptions(options, data.classes.length);
  if (data.train.x.length === 0) throw new RangeError('the training set is empty');
  const run = new HeadTraining(data, opts);
  try {
    const p = hooks.resumeFrom ? await run.restore(hooks.resumeFrom) : run.fresh();
    for (let epoch = p.start + 1; epoch <= opts.epochs; epoch++) {
      if (hooks.shouldStop?.()) throw new Stopped(`training after epoch ${epoch - 1}`);
      run.trainEpoch(epoch);
      const result = await run.score(epoch);
      p.history.push(result);
      // Better = higher validation accuracy, or equal accuracy at lower loss: small validation
      // sets tie often, and stopping on the first tie ends training far too early.
      if (result.valAccuracy > p.best.acc || (result.valAccuracy === p.best.acc && result.valLoss < p.best.loss)) {
        p.best = { acc: result.valAccuracy, loss: result.valLoss, epoch, weights: await run.values() };
        p.since = 0;
      } else p.since++;
      await hooks.onEpoch?.(result);
      if (hooks.checkpoint) await hooks.checkpoint(await run.checkpoint(epoch, p));
      if (opts.patience > 0 && p.since >= opts.patience) {
        p.stoppedEarly = epoch < opts.epochs;
        break;
      }
    }
    return await run.result(p);
  } finally {
    run.dispose();
  }
}
