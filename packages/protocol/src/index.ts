// The wire (messages, codecs, names, pure policies, half floats): what `@graft/protocol/wire` exports.
export * from './wire.js';
export { BusError, isRevisionConflict } from './errors.js';
// Message handles, so no package outside protocol imports the NATS client modules.
export type { JsMsg, ConsumerMessages } from '@nats-io/jetstream';
export { inPool, STORE_READ_CONCURRENCY } from './pool.js';

// ---- policies ----
export {
  isContentError,
  isStoreFull,
  storeFullMessage,
  isTransient,
  isBusNotReady,
  outageDelayMs,
  queueFullDelayMs,
  downloadRetryDelayMs,
  taskFailureAction,
  DOWNLOAD_ATTEMPTS,
  REDELIVERY_DELAY_MS,
  TASK_ACK_WAIT_MS,
  TASK_MAX_DELIVER,
  TASK_CLAIM_TTL_MS,
  MANIFEST_ACK_WAIT_MS,
  MANIFEST_MAX_DELIVER,
  RESULTS_ACK_WAIT_MS,
  RESULTS_MAX_DELIVER,
  WORKER_RETRY_MS,
  UNREPORTED_FAILURE_DELAY_MS,
  OPEN_RETRY,
} from './policy/retry.js';
export type { FailureAction } from './policy/retry.js';

// ---- the bus and its stores ----
export { openBus, describeBus, serverCredentials } from './bus.js';
export type { Bus, BusOptions } from './bus.js';
export { STORE_LIMIT_NAMES, DEFAULT_STORE_LIMITS, WORKER_STREAMS } from './stream-configs.js';
export type { TopologyOptions, StoreLimitName } from './stream-configs.js';
export {
  queuedStatus,
  createJobRecord,
  readJobRecord,
  readJob,
  writeJobRecord,
  listJobIds,
  listJobs,
  watchJob,
  watchJobStates,
  publishJobEvent,
} from './stores/jobs.js';
export {
  readManifest,
  readManifestHeader,
  withPages,
  imagePages,
  publishManifest,
  publishOver,
  isStoredJobSound,
  removeForeignManifest,
  JobAlreadyPublished,
  consumeManifests,
  PAGED_MANIFEST_LIMITS,
} from './stores/manifests.js';
export type { JobRecord, JobEventBody } from './stores/jobs.js';
export {
  encodeVector,
  decodeVector,
  cacheVector,
  readCachedVector,
  readCachedVectors,
  scanCachedVectors,
  vectorOf,
  halfVectorOf,
  hasCachedVectors,
  isVectorCacheFull,
} from './stores/vectors.js';
export type { CacheAnswer } from './stores/vectors.js';
export { toHalf } from './half.js';
export { readImage, putImage, isImageStored, hasImage, removeCorruptImage, IMAGE_CHUNK_BYTES } from './stores/images.js';
export { readPrepared, putPrepared } from './stores/prepared.js';
export type { PreparedRead } from './stores/prepared.js';
export type { ImageRead } from './stores/images.js';
export { hasModel, putModel, getModel } from './stores/models.js';
export type { ModelBlobs } from './stores/models.js';
export {
  readCheckpoint,
  writeCheckpoint,
  deleteCheckpoint,
  readSweepHead,
  writeSweepHead,
  hasSweepHead,
  deleteSweepHeads,
  readAuditFold,
  writeAuditFold,
  deleteAuditFolds,
  writeModelFiles,
  readModelFile,
  readPredictionPage,
  writePredictionPage,
  readSuggestions,
  writeSuggestions,
} from './stores/artifacts.js';
export { createClaim, readClaim, takeOverClaim, renewClaim, markClaimAnswered, releaseClaim, serverNow } from './stores/claims.js';
export type { Claim } from './stores/claims.js';
export { readLease, createLease, writeLease, deleteLease, taskKey } from './stores/leases.js';
export type { StoredLease } from './stores/leases.js';
export {
  ensureExtractorConsumer,
  publishTask,
  listTaskQueues,
  taskQueueDepth,
  taskQueueOf,
  openTaskQueue,
  imagesOnTheWay,
  removeAnsweredTask,
  watchDeadTasks,
} from './stores/tasks.js';
export type { ExtractorConsumerOptions, TaskQueueInfo, TaskPuller } from './stores/tasks.js';
export { publishResults, consumeResults } from './stores/results.js';
export { deadLetter } from './stores/dead-letters.js';
export { startLocalNats, findNatsServer, freePort, stopProcess } from './nats-server.js';
export type { LocalNats, LocalNatsOptions } from './nats-server.js';
export { BROKER_STORES, brokerStats } from './broker-stats.js';
export type { BrokerStats, ConsumerStats, StoreStats } from './broker-stats.js';
