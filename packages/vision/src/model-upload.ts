import { BackboneError } from './errors.js';
import { modelFilesFrom, sha256Hex, shardPaths, type ModelFiles, type ModelJson } from './model-files.js';
import type { ReadUpload } from './model-policy.js';

/*
 * A local model its user uploaded to the cluster (`graft publish --backbone ./my-model`), as
 * content-addressed blobs: a .pb as it is, or a TF.js model as a model.json whose one weights file is
 * named by its SHA-256. The publisher makes the blobs; the loader reads them back, each checked
 * against its name, so an upload can only ever be the bytes the manifest names.
 */

/** One blob of an upload: its SHA-256 (its name in the store) and bytes. */
export interface UploadBlob {
  sha256: string;
  bytes: Uint8Array;
  /** What it is, for progress and errors. */
  what: string;
}

/** An uploaded model: the SHA-256 the manifest names (the .pb's, or model.json's) and every blob. */
export interface ModelUpload {
  sha256: string;
  blobs: UploadBlob[];
}

const SHA256 = /^[0-9a-f]{64}$/;

/** The blob of a one-file model: a .pb (already out of any archive) or an .onnx. */
export function fileUpload(bytes: Uint8Array, name: string): ModelUpload {
  const sha256 = sha256Hex(bytes);
  return { sha256, blobs: [{ sha256, bytes, what: name }] };
}

/** The blobs of a TF.js model: its weights, and a model.json naming them by SHA-256 (written last by the uploader). */
export function tfjsUpload(files: ModelFiles): ModelUpload {
  const weights = new Uint8Array(files.weightData);
  const json = { ...files.json, weightsManifest: [{ paths: [files.weightsSha256], weights: files.json.weightsManifest.flatMap((g) => g.weights) }] };
  const modelJson = new TextEncoder().encode(JSON.stringify(json));
  const sha256 = sha256Hex(modelJson);
  return {
    sha256,
    blobs: [
      { sha256: files.weightsSha256, bytes: weights, what: 'weights' },
      { sha256, bytes: modelJson, what: 'model.json' },
    ],
  };
}

/**
 * Reads one uploaded blob and checks it against its name.
 * @throws BackboneError for a name that is not a SHA-256, a missing or oversized blob, other bytes.
 */
export async function readUploadedBlob(sha256: string, read: ReadUpload | undefined, maxBytes: number): Promise<Uint8Array> {
  if (!SHA256.test(sha256)) throw new BackboneError(`uploaded model: ${JSON.stringify(sha256.slice(0, 80))} is not a SHA-256`);
  if (!read) throw new BackboneError(`model upload ${sha256} is read from a cluster's image store, and this process has none`);
  let bytes: Uint8Array;
  try {
    bytes = await read(sha256, maxBytes);
  } catch (err) {
    throw new BackboneError(`cannot read uploaded model file ${sha256}: ${(err as Error).message}`, { cause: err });
  }
  if (sha256Hex(bytes) !== sha256) throw new BackboneError(`uploaded model file ${sha256} holds other bytes than its SHA-256 names: refusing it`);
  return bytes;
}

/**
 * An uploaded TF.js model: model.json by its SHA-256, then each weights file it names by SHA-256,
 * all within maxBytes together.
 * @throws BackboneError naming what is wrong.
 */
export async function readUploadedModel(sha256: string, read: ReadUpload | undefined, maxBytes: number, origin: string): Promise<ModelFiles> {
  const jsonBytes = await readUploadedBlob(sha256, read, maxBytes);
  let json: ModelJson;
  try {
    json = JSON.parse(new TextDecoder().decode(jsonBytes)) as ModelJson;
  } catch {
    throw new BackboneError(`uploaded model ${sha256} is not a TF.js model.json (not JSON)`);
  }
  let left = maxBytes - jsonBytes.byteLength;
  const shards: Uint8Array[] = [];
  for (const p of shardPaths(json, `uploaded model ${sha256}`)) {
    if (!SHA256.test(p)) throw new BackboneError(`uploaded model ${sha256} names a weights file ${JSON.stringify(p.slice(0, 80))} that is not a SHA-256`);
    const shard = await readUploadedBlob(p, read, left);
    left -= shard.byteLength;
    shards.push(shard);
  }
  return modelFilesFrom(json, shards, origin);
}
