export { startCoordinator } from './coordinator.js';
export type { Coordinator, CoordinatorState, CoordinatorDeps } from './coordinator.js';
export type { CoordinatorOptions } from './options.js';
export { assignSplit } from './splits.js';
export { validateManifest, ManifestError } from './manifest.js';
export { splitOf, splitPercents } from './splits.js';
export { headOptions } from './training.js';
