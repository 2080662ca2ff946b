import type { TrainingOptions } from '@graft/protocol';
import type { TrainOptions } from '@graft/head';

/**
 * The head's options from the manifest's: each absent one is left for the head to default
 * (zero is a value, never "unset").
 */
export function headOptions(t: TrainingOptions | null | undefined): TrainOptions {
  return {
    optimizer: (t?.optimizer ?? undefined) as TrainOptions['optimizer'],
    learningRate: t?.learningRate ?? undefined,
    batchSize: t?.batchSize ?? undefined,
    epochs: t?.epochs ?? undefined,
    patience: t?.patience ?? undefined,
    seed: t?.seed ?? undefined,
    standardize: t?.standardize ?? undefined,
    classWeights: (t?.classWeights ?? undefined) as TrainOptions['classWeights'],
    weightDecay: t?.weightDecay ?? undefined,
    labelSmoothing: t?.labelSmoothing ?? undefined,
    hiddenUnits: t?.hiddenUnits ?? undefined,
    dropout: t?.dropout ?? undefined,
  };
}
