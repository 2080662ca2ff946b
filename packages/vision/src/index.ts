export { initBackend, chooseBackend, backendChoice, backendPlan, cudaDeviceOf, BACKEND_NAMES, TFJS_BACKEND_NAMES } from './backend.js';
export type { BackendName, BackendChoice, BackendOptions, OnnxPlacement, TfjsBackendName } from './backend.js';
export {
  CATALOGUE,
  DEFAULT_ID,
  PREPROCESS,
  RESIZE_METHOD,
  fingerprintOf,
  uniformAffine,
  parseBackbone,
  backboneRequest,
  requestedSpec,
  resolvedFields,
  resolvedFromFields,
} from './backbone-record.js';
export type { BackboneSpec, ResolvedBackbone, BackboneFields, BackboneOverrides, ChannelAffine, Preprocess } from './backbone-record.js';
export { loadBackbone, fetchBackbone, backboneFromFiles, runtimeLabel } from './backbone.js';
export type { Backbone, BackboneRuntime, FetchedBackbone, LoadBackboneOptions } from './backbone.js';
export { cutAt, isGraphModel, modelArtifacts } from './tfjs-model.js';
export { modelBundle, filesFromBundle, isOnnxModel } from './model-files.js';
export type { ModelFiles } from './model-files.js';
export { DEFAULT_ALLOW_MODEL_FILES, DEFAULT_ALLOW_PRIVATE_MODEL_HOSTS, DEFAULT_MAX_MODEL_BYTES, USER_MODEL_POLICY } from './model-policy.js';
export type { FetchModelOptions, ReadUpload } from './model-policy.js';
export { localModelUpload } from './model-source.js';
export type { ModelUpload, UploadBlob } from './model-upload.js';
export { fetchCapped, FetchFailure, MAX_REDIRECTS, hideUrlCredentials, isPrivateAddress, redactUrl } from './http-fetch.js';
export type { CappedFetchOptions, FetchedBody, FetchFailureKind } from './http-fetch.js';
export { decodeImage, decodeResized, imageKind, resolveDecodeLimits, IMAGE_EXTENSIONS } from './image.js';
export type { DecodeLimits, DecodeWindow } from './image.js';
export { ImageError, BackboneError } from './errors.js';
export type { ImageErrorCode } from './errors.js';
export { graphDefModel, readGraphDef, tensorflow } from './graphdef.js';
export { retrainHead, retrainHeadWeights, RETRAIN_MOBILENET_PREPROCESS } from './retrain-graph.js';
export type { RetrainHead } from './retrain-graph.js';
export type { GraphSource, GraphDefOptions } from './graphdef.js';
export { inspectModel } from './inspect.js';
export type { Inspection, InspectedNode } from './inspect.js';
export { AUGMENTATIONS, MAX_AUGMENT_COPIES, parseAugmentSpec, augmentedId, parseImageId, isAugmentedId, augmentParams, decodeAugmented } from './augment.js';
export type { Augmentation } from './augment.js';
export {
  OnnxBuilder,
  OPSET,
  IR_VERSION,
  DataType as OnnxDataType,
  int as onnxInt,
  ints as onnxInts,
  float as onnxFloat,
  str as onnxStr,
  tensorProto,
} from './onnx/onnx-builder.js';
export type { AttrValue as OnnxAttrValue, Dim as OnnxDim } from './onnx/onnx-builder.js';
export { backboneOnnx, PIXELS, VECTORS } from './onnx/backbone-onnx.js';
export { withHead, PROBABILITIES } from './onnx/with-head.js';
export type { DenseSpec } from './onnx/with-head.js';
export { backboneGraph, classifierGraph, runClassifierGraph } from './onnx/backbone-export.js';
export type { TfjsSource, BackboneGraphOptions } from './onnx/backbone-onnx.js';
export { ConversionError, TfOps, affinePixels } from './onnx/tf-ops.js';
export { openOnnxSession, OnnxRuntimeError } from './onnx/onnx-session.js';
export type { OnnxSession, OnnxSessionOptions } from './onnx/onnx-session.js';
export { PARITY_TOLERANCE, probePixels, relativeDifference } from './onnx/onnx-backbone.js';
export { CONVERTER_VERSION } from './onnx/conversion-cache.js';
export { describeOnnx, readOnnx, MIN_OPSET } from './onnx/onnx-models.js';
export type { OnnxDescription } from './onnx/onnx-models.js';
export { onnx } from '../gen/onnx.js';
export { retrainOutputGraph, bottleneckRank, RETRAIN_OUTPUT } from './retrain-export.js';
export { graphDefSource, readGraphDefBytes } from './model-source.js';
