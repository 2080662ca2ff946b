import { BackboneError } from './errors.js';

/** Reads one uploaded blob by its SHA-256, refusing one over maxBytes before reading it. */
export type ReadUpload = (sha256: string, maxBytes: number) => Promise<Uint8Array>;

/*
 * graft's one model trust policy: where a model may be read from and how big it may be. The
 * default is the careful one (no local files): whoever loads a model a stranger named (the
 * coordinator, reading a manifest) keeps it; a user loading their own model says so
 * (USER_MODEL_POLICY).
 */

/** Largest model accepted (model.json plus weights), bytes, unless the operator says otherwise. */
export const DEFAULT_MAX_MODEL_BYTES = 1024 ** 3;
/** Whether `file://` models may be loaded when nobody says. */
export const DEFAULT_ALLOW_MODEL_FILES = false;

/** Whether models may be downloaded from this machine or a private network when nobody says. */
export const DEFAULT_ALLOW_PRIVATE_MODEL_HOSTS = false;

/** A user's own command line naming their own model: any file they can read, any host they can reach. */
export const USER_MODEL_POLICY = { allowFiles: true, allowPrivateHosts: true } as const;

/**
 * Where models may come from, and how big they may be. Whoever loads a model a stranger named
 * (the coordinator, reading a manifest) narrows it; a user loading their own model need not.
 */
export interface FetchModelOptions {
  /** Folder for downloaded models. Default ~/.cache/graft/models (the CLI also reads $GRAFT_CACHE_DIR). */
  cacheDir?: string;
  /** Per-request timeout, ms. Default 30000. */
  timeoutMs?: number;
  /** Called with bytes downloaded so far and the file name. */
  onProgress?: (file: string, bytes: number) => void;
  /** Whether `file://` models (any readable path on this machine) may be loaded. Default {@link DEFAULT_ALLOW_MODEL_FILES}. */
  allowFiles?: boolean;
  /** Whether models may come from this machine or a private network (loopback, 10/8, 169.254/16...). Default false. */
  allowPrivateHosts?: boolean;
  /** Largest model accepted (model.json plus weights), bytes. Default {@link DEFAULT_MAX_MODEL_BYTES}. */
  maxBytes?: number;
  /** The weights must hash to this (a catalogue entry's pinned digest). */
  expectWeightsSha256?: string;
  /** Told when something was set right by itself (a corrupt cache entry removed and downloaded again). */
  onWarning?: (message: string) => void;
  /** The SHA-256 a manifest names an uploaded model by: read with readUpload instead of the URL (model-upload.ts). */
  upload?: string;
  /** Reads an uploaded blob from the cluster (the coordinator's image store). Without it an upload is refused. */
  readUpload?: ReadUpload;
  /** For a TensorFlow GraphDef (.pb): where to cut it and, if it does not say, its input size. */
  graph?: { bottleneck?: string; inputSize?: number; inputNode?: string };
}
/** @throws BackboneError when these options do not allow local model files. */
export function refuseUnlessFilesAllowed(url: string, opts: Pick<FetchModelOptions, 'allowFiles'>): void {
  if (!(opts.allowFiles ?? DEFAULT_ALLOW_MODEL_FILES))
    throw new BackboneError(
      `model ${url} is a local file, and this process loads local models only when its operator allows it (graft coordinator --allow-model-files)`,
    );
}

/** The largest model these options accept, bytes. */
export function maxModelBytes(opts: Pick<FetchModelOptions, 'maxBytes'>): number {
  return opts.maxBytes ?? DEFAULT_MAX_MODEL_BYTES;
}
