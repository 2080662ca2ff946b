/*
 * graft's wire, apart from the runtime: the protobuf messages and their codecs, every name, the
 * policies that are pure functions of a message (splits, job ids, task tokens) and half floats.
 * Importing this loads no NATS module (`@graft/protocol/wire`): what the head, the web bundle and the
 * classifier need of protocol. The rest of protocol (the bus, the stores) is `@graft/protocol`.
 */
export * from './names.js';
export { ProtocolError, JobRecordConflict } from './errors.js';
export { codecs, pb, Split, VectorDType, ErrorCode, JobState, jobStateName, errorCodeName, splitName, isTerminal } from './messages.js';
export type {
  BackboneRef,
  TrainingOptions,
  ImageEntry,
  SkippedFile,
  DatasetManifest,
  ExtractionTask,
  ImageVector,
  VectorBatch,
  JobCounts,
  EpochMetrics,
  JobStatus,
  JobEvent,
  NamedTensor,
  SweepHead,
  AuditFold,
  Checkpoint,
  CachedVector,
  PredictOptions,
  DenseLayer,
  PredictHead,
  Prediction,
  PredictionPage,
  Suggestion,
  Suggestions,
} from './messages.js';
export { decodeHalf, encodeHalf } from './half.js';
export * from './policy/splits.js';
export * from './policy/job-ids.js';
export * from './policy/task-tokens.js';
