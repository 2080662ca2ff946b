export { startCoordinator } from './coordinator.js';
export type { Coordinator, CoordinatorState, CoordinatorDeps } from './coordinator.js';
export { resolveCoordinatorOptions } from './options.js';
export type { CoordinatorOptions, ResolvedCoordinatorOptions } from './options.js';
export { assignSplit } from './splits.js';
export type { SplitName } from './splits.js';
export { validateManifest, ManifestError } from './manifest.js';
export { coordinatorMetrics } from './metrics.js';
export type { CoordinatorMetrics } from './metrics.js';
