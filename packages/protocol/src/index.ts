export {
  DEFAULT_NATS_URL,
  STREAMS,
  SUBJECTS,
  BUCKETS,
  BUCKET_STREAMS,
  LEASES,
  CONSUMERS,
  MAX_DELIVERIES_ADVISORY,
  manifestSubject,
  taskSubject,
  resultSubject,
  extractorConsumer,
  deadLetterSubject,
  fingerprintOfConsumer,
  vectorKey,
  artifactNames,
  modelObjects,
  isValidJobId,
  kvKeyLocation,
} from './names.js';
export { ProtocolError, BusError, isStoreFull, storeFullMessage } from './errors.js';
export {
  codecs,
  Split,
  VectorDType,
  ErrorCode,
  JobState,
  jobStateName,
  errorCodeName,
  isTerminal,
} from './messages.js';
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
} from './messages.js';
export { isContentError, taskFailureAction, REDELIVERY_DELAY_MS } from './retry-policy.js';
export type { FailureAction } from './retry-policy.js';
export {
  queuedStatus,
  createJobRecord,
  readJobRecord,
  readManifest,
  readJob,
  writeJobRecord,
  listJobs,
  watchJob,
  publishJobEvent,
  JobRecordConflict,
  isRevisionConflict,
} from './jobs.js';
export type { JobRecord, JobEventBody } from './jobs.js';
export { openBus, describeBus, ensureExtractorConsumer, TASK_CLAIM_TTL_MS } from './bus.js';
export type { Bus, BusOptions, TopologyOptions, StoreLimitName } from './bus.js';
export { STORE_LIMIT_NAMES, DEFAULT_STORE_LIMITS } from './bus.js';
export { encodeVector, decodeVector } from './vectors.js';
export { readImage, putImage } from './images.js';
export type { ImageRead } from './images.js';
export { deadLetter } from './dead-letters.js';
export { startLocalNats, findNatsServer, freePort, stopProcess } from './nats-server.js';
export type { LocalNats, LocalNatsOptions } from './nats-server.js';
