export { resolveTrainOptions } from './options.js';
export type { TrainOptions, ResolvedTrainOptions } from './options.js';
export { trainHead, seededRandom, TrainingAborted } from './train.js';
export type { HeadDataset, LabelledVectors, EpochResult, SavedTensor, TrainingCheckpoint, TrainedHead, TrainHooks } from './train.js';
export { evaluatePredictions, formatReport, formatSweep, misclassifiedOf, MAX_MISCLASSIFIED } from './evaluate.js';
export type { EvaluationReport, Misclassified, SweepRow } from './evaluate.js';
export {
  MODEL_FILES,
  AUDIT_FILE,
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
export { auditDataset, auditProblem, photosPerClass, resolveAuditOptions, DEFAULT_AUDIT_FOLDS, NEAR_DUPLICATE_SIMILARITY, MIN_PHOTOS_PER_CLASS, LABEL_ISSUE_METHOD } from './audit/audit.js';
export type { AuditStage } from './audit/audit.js';
export type { AuditInput, AuditOptions, AuditPhoto, AuditReport, AuditRef, DuplicateGroup, LabelIssue, LeakedPair, Outlier, ResolvedAuditOptions, SplitName } from './audit/audit-types.js';
export { findLabelIssues, classThresholds, confidentJoint, calibratedJoint, normalizedMargin } from './audit/confident-learning.js';
export type { ConfidentLearningFilter, ConfidentLearningResult } from './audit/confident-learning.js';
export { outOfSampleProbabilities, foldOf, FoldsAborted } from './audit/folds.js';
export type { FoldHooks } from './audit/folds.js';
export { nearestNeighbours, unitRows } from './audit/neighbours.js';
export { floatsOf, rowBytes } from './rows.js';
export { sharedRows } from './thread-pool.js';
export type { SharedRows } from './thread-pool.js';
export type { VectorRow } from './rows.js';
export { headProbabilities } from './audit/probabilities.js';
export { fixesOf, formatFixes, parseFixes, FIXES_HEADER } from './audit/fixes.js';
export type { Fix } from './audit/fixes.js';
export { formatAudit } from './audit/summary.js';
