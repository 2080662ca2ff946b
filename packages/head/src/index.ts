export { resolveTrainOptions } from './options.js';
export type { TrainOptions, ResolvedTrainOptions } from './options.js';
export { trainHead, seededRandom, TrainingAborted } from './train.js';
export type { HeadDataset, LabelledVectors, EpochResult, SavedTensor, TrainingCheckpoint, TrainedHead, TrainHooks } from './train.js';
export { evaluatePredictions, formatReport, formatSweep, misclassifiedOf, MAX_MISCLASSIFIED } from './evaluate.js';
export type { EvaluationReport, Misclassified, SweepRow } from './evaluate.js';
export {
  MODEL_FILES,
  packageModel,
  modelFiles,
  writeModelFolder,
  readModelFolder,
  loadHeadModel,
  predict,
} from './model.js';
export type { ModelManifest, ModelFolder } from './model.js';
export { loadClassifier, classifyFile } from './classifier.js';
export type { Classifier, Prediction } from './classifier.js';
export { DEFAULT_SWEEP_GRID, MAX_SWEEP_HEADS, MAX_SWEEP_EPOCHS, countSweepHeads, expandGrid, parseSweepGrid, pickWinner, runSweep, trainSweepHead, defaultSweepParallelism, SweepAborted } from './sweep.js';
export type { SweepAxes, SweepGrid, SweepConfig, SweepHeadResult, SweepHooks } from './sweep.js';
export { importRetrainGraph, IMPORT_TOLERANCE } from './retrain-import.js';
export type { ImportOptions, ImportResult } from './retrain-import.js';
