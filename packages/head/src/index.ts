export { resolveTrainOptions } from './options.js';
export type { TrainOptions, ResolvedTrainOptions } from './options.js';
export { trainHead, seededRandom, TrainingAborted } from './train.js';
export type { HeadDataset, LabelledVectors, EpochResult, SavedTensor, TrainingCheckpoint, TrainedHead, TrainHooks } from './train.js';
export { evaluatePredictions, formatReport, misclassifiedOf, MAX_MISCLASSIFIED } from './evaluate.js';
export type { EvaluationReport, Misclassified } from './evaluate.js';
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
