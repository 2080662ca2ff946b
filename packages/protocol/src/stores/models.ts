import { handles, type Bus } from '../bus.js';
import { BUCKETS, modelObjects } from '../names.js';
import { isStoreFull, storeFullMessage } from '../policy/retry.js';
import { readObject, readObjectInfo } from './direct-reads.js';

/*
 * The model store (graft-models): each backbone a coordinator resolved, under its fingerprint, as
 * two objects: model.json (naming one weights file) and weights.bin. This module is its only reader
 * and writer. model.json is written last: its presence marks a complete entry. Reads are direct gets
 * (no consumer: workers read models and may create none).
 */

/** A stored backbone's two blobs. */
export interface ModelBlobs {
  modelJson: Uint8Array;
  weights: Uint8Array;
}

/** Whether a complete model is stored under this fingerprint. */
export async function hasModel(bus: Bus, fingerprint: string): Promise<boolean> {
  const info = await readObjectInfo(bus, BUCKETS.models, modelObjects.json(fingerprint));
  return Boolean(info && !info.deleted);
}

/**
 * Stores a model under its fingerprint: weights first, then model.json.
 * @throws Error saying the model store is full (and how to make room), or as JetStream.
 */
export async function putModel(bus: Bus, fingerprint: string, blobs: ModelBlobs): Promise<void> {
  try {
    await handles(bus).models.putBlob({ name: modelObjects.weights(fingerprint) }, blobs.weights);
    await handles(bus).models.putBlob({ name: modelObjects.json(fingerprint) }, blobs.modelJson);
  } catch (err) {
    if (isStoreFull(err)) throw new Error(`cannot put the backbone where workers load it: ${storeFullMessage('models', BUCKETS.models)}`, { cause: err });
    throw err;
  }
}

/** A stored model's blobs, or undefined when either is missing. */
export async function getModel(bus: Bus, fingerprint: string): Promise<ModelBlobs | undefined> {
  const [modelJson, weights] = await Promise.all([
    readObject(bus, BUCKETS.models, modelObjects.json(fingerprint)),
    readObject(bus, BUCKETS.models, modelObjects.weights(fingerprint)),
  ]);
  return modelJson && weights ? { modelJson, weights } : undefined;
}
