import { createHash } from 'node:crypto';
import { BackboneError } from './errors.js';
import type { ModelFiles } from './model-files.js';

/**
 * How pixels (0..255) become model input, written once for every backbone, per channel (R, G, B):
 * - unit:      x / 255                            -> [0, 1]  (TF Hub image models, Darknet, nsfwjs)
 * - symmetric: x / 127.5 - 1                      -> [-1, 1] (Keras MobileNet/Inception "tf" mode)
 * - none:      x                                  -> [0, 255]
 * - imagenet:  (x / 255 - mean[c]) / std[c]        (torchvision: mean 0.485, 0.456, 0.406; std 0.229, 0.224, 0.225)
 */
export type Preprocess = 'unit' | 'symmetric' | 'none' | 'imagenet';
export interface ChannelAffine {
  /** y[c] = x[c] * scale[c] + offset[c], c = R, G, B. */
  scale: readonly [number, number, number];
  offset: readonly [number, number, number];
}
const same = (scale: number, offset: number): ChannelAffine => ({ scale: [scale, scale, scale], offset: [offset, offset, offset] });
const IMAGENET_MEAN = [0.485, 0.456, 0.406];
const IMAGENET_STD = [0.229, 0.224, 0.225];
export const PREPROCESS: Readonly<Record<Preprocess, ChannelAffine>> = {
  unit: same(1 / 255, 0),
  symmetric: same(1 / 127.5, -1),
  none: same(1, 0),
  imagenet: {
    scale: IMAGENET_STD.map((s) => 1 / (255 * s)) as [number, number, number],
    offset: IMAGENET_MEAN.map((m, c) => -m / IMAGENET_STD[c]) as [number, number, number],
  },
};

/** The scale and offset when every channel shares them (else undefined). */
export function uniformAffine(a: ChannelAffine): { scale: number; offset: number } | undefined {
  return a.scale.every((v) => v === a.scale[0]) && a.offset.every((v) => v === a.offset[0]) ? { scale: a.scale[0], offset: a.offset[0] } : undefined;
}

/** Resize used for every backbone (sharp's linear kernel, aspect not kept); part of the fingerprint. */
export const RESIZE_METHOD = 'bilinear-fill';

/** A backbone as configured: where the model is and how to feed and cut it. */
export interface BackboneSpec {
  /** Catalogue id, or "custom". */
  id: string;
  /** embedded:..., file://... or http(s)://... of a TF.js model.json (or TF Hub model handle). */
  url: string;
  /** Layer (layers model) or node (graph model) whose output, global-average-pooled if spatial, is the bottleneck; "" = the model's output. */
  bottleneck: string;
  /** Square input edge, pixels. */
  inputSize: number;
  preprocess: Preprocess;
  /** Whether the user chose the preprocessing (not the default): a graph's own convention then does not apply. Never on the wire. */
  preprocessGiven?: boolean;
  /** A frozen TensorFlow graph (.pb): the node to feed; unset = found in the graph. */
  inputNode?: string;
  /** A .pb once resolved: SHA-256 of its bytes (other bytes are refused when it is loaded again). */
  sourceSha256?: string;
  /** A local model its publisher uploaded to the cluster: read from there by SHA-256, not from url (model-upload.ts). */
  uploadSha256?: string;
  /** Expected bottleneck dimension, when known in advance. */
  dim?: number;
  /** Other addresses of the same model, tried in order when url cannot be fetched (each once per process). */
  mirrors?: readonly string[];
  /** Pinned SHA-256 of the concatenated weights (catalogue entries): other bytes are refused. */
  weightsSha256?: string;
  /** Shown to users: what it is and how good it is. */
  description?: string;
}

/** A backbone resolved to concrete weights: what tasks carry and cache keys are built on. */
export interface ResolvedBackbone extends BackboneSpec {
  /** 16 hex chars: SHA-256 of weights + preprocessing + bottleneck + input size + resize method. */
  fingerprint: string;
  dim: number;
  format: 'layers' | 'graph' | 'onnx';
  /** Set when the model came from a mirror of its url: which, and why. */
  warning?: string;
}

/**
 * A backbone on the wire (the proto message BackboneRef), described by its shape so that
 * vision needs no protobuf: absent overrides are null or undefined, never "".
 */
export interface BackboneFields {
  id?: string | null;
  url?: string | null;
  bottleneck?: string | null;
  inputSize?: number | null;
  preprocess?: string | null;
  fingerprint?: string | null;
  dim?: number | null;
  format?: string | null;
  inputNode?: string | null;
  sourceSha256?: string | null;
  uploadSha256?: string | null;
}

/** The default backbone, shipped inside graft: what `auto` is (ImageNet MobileNetV2-1.0, no network). */
export const DEFAULT_ID = 'mobilenet_v2_100';

/**
 * Named backbones. URLs are the models' published TF.js locations (TF Hub handles take [0, 1]
 * input); the embedded ones ship in this package or in the nsfwjs npm package (MIT). Entries whose
 * weights could be hashed where graft is built carry that digest (weightsSha256): other bytes are
 * refused. The TF Hub entries cannot be fetched there, so theirs are not pinned yet (their downloads
 * are still hash-checked in the cache and fingerprinted).
 */
export const CATALOGUE: Readonly<Record<string, BackboneSpec>> = {
  [DEFAULT_ID]: {
    id: DEFAULT_ID,
    url: 'embedded:mobilenet_v2_1.0_224',
    bottleneck: '',
    inputSize: 224,
    preprocess: 'symmetric',
    dim: 1280,
    weightsSha256: 'bbf28b194d20ff948c5f844032fc504964e28ee7935b2a2a1ca15745ef7fafe3',
    description: "MobileNetV2 1.0 224, ImageNet (Google's checkpoint, Apache-2.0), 1280-d. Ships with graft (4.4 MB as float16): the default, works offline.",
  },
  mobilenet_v2_035: {
    id: 'mobilenet_v2_035',
    url: 'embedded:mobilenet_v2_0.35_224',
    bottleneck: '',
    inputSize: 224,
    preprocess: 'symmetric',
    dim: 1280,
    weightsSha256: 'e159deb3afa15bc63a53edb3eb31d0d6de1a25f0d8d72d9b8372b5088a902a8a',
    description:
      'MobileNetV2 0.35 224, ImageNet (Keras Applications weights, Apache-2.0), 1280-d. Ships with graft (1.6 MB): about 2.5x cheaper than the default and a few points weaker.',
  },
  inception_v3_mixed5: {
    id: 'inception_v3_mixed5',
    url: 'embedded:nsfwjs/inception_v3',
    bottleneck: 'mixed5',
    inputSize: 299,
    preprocess: 'unit',
    dim: 768,
    weightsSha256: '8a457f3fdec7db18b16e44323454db0eaeb8f314eda0046b2e293e58a5bfabf4',
    description:
      'InceptionV3 (ImageNet-trained up to mixed5, shipped in nsfwjs@4.4.0), mixed5 pooled, 768-d. Works offline; weaker than a full ImageNet model.',
  },
  mobilenet_v2: {
    id: 'mobilenet_v2',
    url: 'https://tfhub.dev/google/tfjs-model/imagenet/mobilenet_v2_100_224/feature_vector/3/default/1',
    // tfhub.dev redirects to Kaggle and has had outages: the same model at its Kaggle address.
    mirrors: ['https://www.kaggle.com/models/google/mobilenet-v2/TfJs/100-224-feature-vector/3'],
    bottleneck: '',
    inputSize: 224,
    preprocess: 'unit',
    dim: 1280,
    description: 'MobileNetV2 1.0 224, ImageNet, 1280-d feature vector (TF Hub; the embedded mobilenet_v2_100 is the same network, offline).',
  },
  mobilenet_v3_large: {
    id: 'mobilenet_v3_large',
    url: 'https://tfhub.dev/google/tfjs-model/imagenet/mobilenet_v3_large_100_224/feature_vector/5/default/1',
    bottleneck: '',
    inputSize: 224,
    preprocess: 'unit',
    dim: 1280,
    description: 'MobileNetV3 Large 1.0 224, ImageNet, 1280-d feature vector (TF Hub).',
  },
  inception_v3: {
    id: 'inception_v3',
    url: 'https://tfhub.dev/google/tfjs-model/imagenet/inception_v3/feature_vector/3/default/1',
    bottleneck: '',
    inputSize: 299,
    preprocess: 'unit',
    dim: 2048,
    description: "InceptionV3, ImageNet, 2048-d pool_3 feature vector (TF Hub): retrain.py's backbone.",
  },
  // The seed's own model: Google's December 2015 InceptionV3 as a frozen TensorFlow GraphDef, read
  // and converted by graft (its JPEG head replaced, batch norms folded), cut at pool_3. The graph
  // takes 299x299 pixels and computes (x - 128) / 128 itself. Not pinned: the archives could not be
  // fetched where graft is built (the converted download is hash-checked in the cache).
  inception_dec_2015: {
    id: 'inception_dec_2015',
    url: 'https://storage.googleapis.com/download.tensorflow.org/models/inception_dec_2015.zip#tensorflow_inception_graph.pb',
    bottleneck: 'pool_3',
    inputSize: 299,
    preprocess: 'none',
    dim: 2048,
    description: 'InceptionV3 of December 2015, ImageNet (the frozen GraphDef retrain.py retrained), pool_3, 2048-d; 88 MB download, converted by graft.',
  },
  inception_2015_12_05: {
    id: 'inception_2015_12_05',
    url: 'https://download.tensorflow.org/models/image/imagenet/inception-2015-12-05.tgz#classify_image_graph_def.pb',
    bottleneck: 'pool_3',
    inputSize: 299,
    preprocess: 'none',
    dim: 2048,
    description: 'The same InceptionV3 as classify_image_graph_def.pb (classify_image.py), pool_3, 2048-d; converted by graft.',
  },
};

/** What `--backbone auto` is: the embedded default. */
export const AUTO = DEFAULT_ID;

/** Overrides for a user model (or a catalogue entry). */
export interface BackboneOverrides {
  bottleneck?: string;
  inputSize?: number;
  preprocess?: string;
  /** A .pb: the node to feed. */
  inputNode?: string;
}

/**
 * Turns what the user typed (`auto`, a catalogue id, a path, `file://` or `http(s)://` URL)
 * into a spec. `auto` is {@link AUTO}, the embedded default.
 * @throws BackboneError for an unknown name or a bad override.
 */
export function parseBackbone(nameOrUrl: string, overrides: BackboneOverrides = {}): BackboneSpec {
  const name = nameOrUrl.trim() || 'auto';
  let spec: BackboneSpec;
  if (name === 'auto') spec = { ...CATALOGUE[AUTO] };
  else if (CATALOGUE[name]) spec = { ...CATALOGUE[name] };
  else if (/^(file|https?|embedded):/.test(name) || name.includes('/') || /\.(json|pb|onnx)$/.test(name)) {
    spec = { id: 'custom', url: toUrl(name), bottleneck: '', inputSize: 0, preprocess: 'unit' };
  } else {
    throw new BackboneError(`unknown backbone ${JSON.stringify(name)}: use auto, ${Object.keys(CATALOGUE).join(', ')}, or a model path/URL`);
  }
  if (overrides.bottleneck !== undefined) spec.bottleneck = overrides.bottleneck;
  if (overrides.inputNode !== undefined) spec.inputNode = overrides.inputNode;
  if (overrides.inputSize !== undefined) {
    if (!Number.isInteger(overrides.inputSize) || overrides.inputSize < 16 || overrides.inputSize > 2048) {
      throw new BackboneError(`input size must be an integer from 16 to 2048, got ${overrides.inputSize}`);
    }
    spec.inputSize = overrides.inputSize;
  }
  if (overrides.preprocess !== undefined) {
    if (!(overrides.preprocess in PREPROCESS))
      throw new BackboneError(`preprocess must be one of ${Object.keys(PREPROCESS).join(', ')}, got ${JSON.stringify(overrides.preprocess)}`);
    spec.preprocess = overrides.preprocess as Preprocess;
    spec.preprocessGiven = true;
  }
  return spec;
}

/** A model URL from what the user typed: a URL as it is, a path as a file:// URL. */
export function toUrl(name: string): string {
  if (/^(file|https?|embedded):/.test(name)) return name;
  return `file://${name.startsWith('/') ? '' : `${process.cwd()}/`}${name}`;
}

/**
 * What a manifest asks for, from what the user typed: a named backbone (`auto` or a catalogue
 * id) travels by name, so the coordinator applies its own catalogue; anything else travels as
 * `custom` with its URL. Overrides travel only when given.
 * @throws BackboneError for an unknown name or a bad override (before anything is uploaded).
 */
export function backboneRequest(nameOrUrl: string, overrides: BackboneOverrides = {}): BackboneFields {
  const spec = parseBackbone(nameOrUrl, overrides);
  const named = spec.id in CATALOGUE;
  // `auto` travels as auto: the coordinator's catalogue says what it is.
  const ref: BackboneFields = { id: named ? ((nameOrUrl.trim() || 'auto') === 'auto' ? 'auto' : spec.id) : 'custom', url: named ? '' : spec.url };
  if (overrides.bottleneck !== undefined) ref.bottleneck = overrides.bottleneck;
  if (overrides.inputSize !== undefined) ref.inputSize = overrides.inputSize;
  if (overrides.preprocess !== undefined) ref.preprocess = overrides.preprocess;
  if (overrides.inputNode !== undefined) ref.inputNode = overrides.inputNode;
  return ref;
}

/**
 * The spec a manifest's request names (the inverse of {@link backboneRequest}).
 * @throws BackboneError for an unknown name or a bad override.
 */
export function requestedSpec(ref: BackboneFields): BackboneSpec {
  const name = ref.id && ref.id !== 'custom' ? ref.id : (ref.url ?? '');
  const spec = parseBackbone(name, {
    bottleneck: ref.bottleneck ?? undefined,
    inputSize: ref.inputSize ?? undefined,
    preprocess: ref.preprocess ?? undefined,
    inputNode: ref.inputNode ?? undefined,
  });
  return ref.uploadSha256 && spec.id === 'custom' ? { ...spec, uploadSha256: ref.uploadSha256 } : spec;
}

/** A resolved backbone as it travels in tasks and job records: every field set (a .pb's too). */
export function resolvedFields(b: ResolvedBackbone): BackboneFields {
  const f: BackboneFields = {
    id: b.id,
    url: b.url,
    bottleneck: b.bottleneck,
    inputSize: b.inputSize,
    preprocess: b.preprocess,
    fingerprint: b.fingerprint,
    dim: b.dim,
    format: b.format,
  };
  if (b.inputNode) f.inputNode = b.inputNode;
  if (b.sourceSha256) f.sourceSha256 = b.sourceSha256;
  return f;
}

/**
 * A resolved backbone read back from a task or job record (the inverse of {@link resolvedFields}).
 * Loading it loads exactly its URL and checks its fingerprint: no mirror.
 * @throws BackboneError when the record is not resolved or names an unknown preprocessing.
 */
export function resolvedFromFields(ref: BackboneFields): ResolvedBackbone {
  if (!ref.fingerprint || !ref.url || !ref.inputSize || !ref.dim)
    throw new BackboneError(`backbone ${JSON.stringify(ref.id ?? '')} is not resolved (no url, input size, dimension or fingerprint)`);
  const preprocess = ref.preprocess ?? 'unit';
  if (!(preprocess in PREPROCESS))
    throw new BackboneError(`preprocess must be one of ${Object.keys(PREPROCESS).join(', ')}, got ${JSON.stringify(preprocess)}`);
  return {
    id: ref.id ?? 'custom',
    url: ref.url,
    bottleneck: ref.bottleneck ?? '',
    inputSize: ref.inputSize,
    preprocess: preprocess as Preprocess,
    fingerprint: ref.fingerprint,
    dim: ref.dim,
    format: ref.format === 'graph' || ref.format === 'onnx' ? ref.format : 'layers',
    ...(ref.inputNode ? { inputNode: ref.inputNode } : {}),
    ...(ref.sourceSha256 ? { sourceSha256: ref.sourceSha256 } : {}),
  };
}

/** Fingerprint over everything that changes the vectors. */
export function fingerprintOf(weightsSha256: string, spec: Pick<BackboneSpec, 'preprocess' | 'bottleneck' | 'inputSize'>): string {
  return createHash('sha256').update([weightsSha256, spec.preprocess, spec.bottleneck, spec.inputSize, RESIZE_METHOD].join('|')).digest('hex').slice(0, 16);
}

/** A backbone record: the spec, what loading it taught (input size, dimension), and its fingerprint. */
export function resolvedInfo(
  spec: BackboneSpec,
  files: Pick<ModelFiles, 'weightsSha256'>,
  format: ResolvedBackbone['format'],
  inputSize: number,
  dim: number,
  warning?: string,
): ResolvedBackbone {
  return {
    id: spec.id,
    url: spec.url,
    bottleneck: spec.bottleneck,
    inputSize,
    preprocess: spec.preprocess,
    fingerprint: fingerprintOf(files.weightsSha256, { ...spec, inputSize }),
    dim,
    format,
    warning,
    ...(spec.inputNode ? { inputNode: spec.inputNode } : {}),
    ...(spec.sourceSha256 ? { sourceSha256: spec.sourceSha256 } : {}),
  };
}
