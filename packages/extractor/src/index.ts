export { startWorker } from './worker.js';
export type { Worker, WorkerState, WorkerDeps } from './worker.js';
export { resolveWorkerOptions } from './options.js';
export type { WorkerOptions, ResolvedWorkerOptions } from './options.js';
export { extractorMetrics } from './metrics.js';
export type { ExtractorMetrics } from './metrics.js';
