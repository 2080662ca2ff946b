export { publishDataset } from './publish.js';
export { scanDataset } from './scan.js';
export type { PublishOptions, Published } from './publish.js';
export { followJob } from './jobs.js';
export { exportModel } from './export.js';
export { generateSampleSet, sampleImage } from './sample.js';
export { REDACT_PATHS } from './logger.js';
export { createProgress } from './progress.js';
export { resolveGpus, withoutOptions } from './gpu-workers.js';
