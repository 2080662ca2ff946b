export { resolveTrainOptions, pickTrainOptions, OPTIMIZERS, TRAIN_OPTION_KEYS } from './options.js';
export { argmax, rankOf } from './argmax.js';
export type { TrainOptions, ResolvedTrainOptions } from './options.js';
export { trainHead, seededRandom } from './train.js';
export { Stopped } from './stop.js';
export type { HeadDataset, LabelledVectors, EpochResult, SavedTensor, TrainingCheckpoint, TrainedHead, TrainHooks } from './train.js';
export { evaluatePredictions, formatReport, formatSweep, misclassifiedOf, coverageCurve, COVERAGE_THRESHOLDS, MAX_MISCLASSIFIED } from './evaluate.js';
export type { EvaluationReport, Misclassified, SweepRow, CoveragePoint } from './evaluate.js';
export { MODEL_FILES, AUDIT_FILE, packageModel, modelFiles, writeModelFolder, readModelFolder, loadHeadModel, predict } from './model.js';
export type { ModelCard, ModelFolder } from './model.js';
export { loadClassifier, classifyFile } from './classifier.js';
export type { Classifier, ClassifierRuntime, Prediction } from './classifier.js';
export {
  DEFAULT_SWEEP_GRID,
  MAX_SWEEP_HEADS,
  MAX_SWEEP_EPOCHS,
  countSweepHeads,
  expandGrid,
  parseSweepGrid,
  pickWinner,
  runSweep,
  trainSweepHead,
  defaultSweepParallelism,
} from './sweep.js';
export type { SweepAxes, SweepGrid, SweepConfig, SweepHeadResult, SweepHooks } from './sweep.js';
export { importRetrainGraph, IMPORT_TOLERANCE } from './retrain-import.js';
export type { ImportOptions, ImportResult } from './retrain-import.js';
export {
  auditDataset,
  auditProblem,
  photosPerClass,
  resolveAuditOptions,
  DEFAULT_AUDIT_FOLDS,
  NEAR_DUPLICATE_SIMILARITY,
  MIN_PHOTOS_PER_CLASS,
  LABEL_ISSUE_METHOD,
} from './audit/audit.js';
export type { AuditStage } from './audit/audit.js';
export type {
  AuditInput,
  AuditOptions,
  AuditPhoto,
  AuditReport,
  AuditRef,
  DuplicateGroup,
  LabelIssue,
  LeakedPair,
  Outlier,
  ResolvedAuditOptions,
  SplitName,
} from './audit/audit-types.js';
export { findLabelIssues, classThresholds, confidentJoint, calibratedJoint, normalizedMargin } from './audit/confident-learning.js';
export type { ConfidentLearningFilter, ConfidentLearningResult, ErrorCountMethod, ErrorCounts } from './audit/confident-learning.js';
export { mixtureCount } from './audit/error-count.js';
export { outOfSampleProbabilities, foldOf } from './audit/folds.js';
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
export { headLayers, HeadLayerError } from './head-layers.js';
export { onnxExport, labelsText, ONNX_FILE, LABELS_FILE, ONNX_TOLERANCE } from './model-onnx.js';
export type { OnnxExport } from './model-onnx.js';
export type { OnnxEntry } from './model.js';
export { retrainExport, RETRAIN_GRAPH_FILE, RETRAIN_LABELS_FILE, RETRAIN_TOLERANCE } from './retrain-export.js';
export type { RetrainExport } from './retrain-export.js';
export { folderProbabilities, largestDifference } from './folder-probabilities.js';
export { encodeDenseHead, decodeDenseHead, applyDenseHead, topClasses, MAX_HEAD_FLOATS, MAX_TOP_K } from './dense-head.js';
export { UncertainPool, kCenterGreedy, poolSize, MAX_SUGGEST } from './selection.js';
export type { Candidate } from './selection.js';
