export { startWorker } from './worker.js';
export type { Worker, WorkerState, WorkerDeps } from './worker.js';
export type { WorkerOptions } from './options.js';
export { extractorMetrics } from './metrics.js';
