export {
  SUBJECT_ROOT,
  STREAMS,
  SUBJECTS,
  BUCKETS,
  CONSUMERS,
  MAX_DELIVERIES_ADVISORY,
  manifestSubject,
  taskSubject,
  resultSubject,
  eventSubject,
  extractorConsumer,
  fingerprintOfConsumer,
  vectorKey,
  artifactNames,
  isValidJobId,
} from './names.js';
export { ProtocolError, BusError } from './errors.js';
export {
  pb,
  codecs,
  MessageCodec,
  Split,
  VectorDType,
  ErrorCode,
  JobState,
  jobStateName,
  errorCodeName,
  splitName,
  isTerminal,
} from './messages.js';
export type {
  BackboneRef,
  BackboneRefMessage,
  TrainingOptions,
  ImageEntry,
  SkippedFile,
  DatasetManifest,
  ExtractionTask,
  ImageVector,
  VectorBatch,
  StageTimings,
  JobCounts,
  EpochMetrics,
  ImageFailure,
  EvaluationSummary,
  JobStatus,
  JobEvent,
  CachedVector,
  Checkpoint,
  NamedTensor,
  Full,
} from './messages.js';
export { openBus, openBusOn, connectNats, describeBus, ensureExtractorConsumer } from './bus.js';
export type { Bus, BusOptions, TopologyOptions, ExtractorConsumerOptions } from './bus.js';
export { encodeVector, decodeVector } from './vectors.js';
export { readImage } from './images.js';
