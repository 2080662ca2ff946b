export { startCoordinator } from './coordinator.js';
export type { Coordinator, CoordinatorState, CoordinatorDeps } from './coordinator.js';
export type { CoordinatorOptions } from './options.js';
export { validateManifest, ManifestError } from './manifest.js';
export { headOptions } from './head-options.js';
export { loadJobVectors } from './training-vectors.js';
export type { JobVectors } from './training-vectors.js';
export { resolveCoordinatorOptions } from './options.js';
export { JobImages } from './job-images.js';
