export { initBackend, backendPlan, activeBackend, BACKEND_NAMES } from './backend.js';
export type { BackendName, BackendChoice, BackendOptions } from './backend.js';
export {
  CATALOGUE,
  EMBEDDED_ID,
  AUTO_PREFERRED,
  AUTO_FALLBACK,
  PREPROCESS,
  RESIZE_METHOD,
  parseBackbone,
} from './backbones.js';
export type { BackboneSpec, BackboneOverrides, Preprocess } from './backbones.js';
export { loadBackbone, fingerprintOf } from './backbone.js';
export type { Backbone, ResolvedBackbone, LoadBackboneOptions } from './backbone.js';
export { fetchModel, defaultCacheDir } from './model-source.js';
export type { ModelFiles, ModelJson, FetchModelOptions } from './model-source.js';
export { decodeImage, DEFAULT_DECODE_LIMITS, IMAGE_EXTENSIONS } from './image.js';
export type { DecodeLimits } from './image.js';
export { ImageError, BackboneError } from './errors.js';
export type { ImageErrorCode } from './errors.js';
