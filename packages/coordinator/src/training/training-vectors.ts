import { halfVectorOf, readCachedVectors, vectorOf, VectorDType, type Bus, type CachedVector } from '@graft/protocol';
import { floatsOf, type LabelledVectors, type VectorRow } from '@graft/head';
import { augmentedId } from '@graft/vision';
import type { ManifestEntries, JobManifest } from '../tracking/manifest-entries.js';
import { ShaIndex } from '../tracking/sha-index.js';
import type { Persist } from '../outage.js';

/** One split's vectors, labels and the photos they came from. */
export type SplitVectors = LabelledVectors & { images: { sha256: string; path: string }[] };

/** A job's vectors by split; `augmented` counts the copies at the end of the training set. */
export interface JobVectors {
  train: SplitVectors;
  validation: SplitVectors;
  test: SplitVectors;
  augmented: number;
}

/**
 * The cached vectors of a job's images, by split (images that failed are left out; augmented copies
 * join training). A job that asked for float16 vectors has them held as half floats too: half the
 * memory of float32, and nothing lost that the cache had kept.
 */
export async function loadJobVectors(bus: Bus, manifest: JobManifest, list: ManifestEntries, fingerprint: string, persist: Persist): Promise<JobVectors> {
  const sets: JobVectors = { train: { x: [], y: [], images: [] }, validation: { x: [], y: [], images: [] }, test: { x: [], y: [], images: [] }, augmented: 0 };
  const rowOf: (e: CachedVector | undefined) => VectorRow | undefined = manifest.vectorDtype === VectorDType.VECTOR_DTYPE_FLOAT16 ? halfVectorOf : vectorOf;
  // Each photo read once however many entries list it, its row kept by the photo's number.
  const { index: photos, numbers: photoOf } = ShaIndex.distinct(list.shaColumn, list.length);
  const vectors: (VectorRow | undefined)[] = new Array(photos.size);
  const photoIds = Array.from({ length: photos.size }, (_, n) => photos.hex(n));
  await persist('reading the vector cache', () => readCachedVectors(bus, fingerprint, photoIds, (sha, e) => (vectors[photos.findHex(sha)] = rowOf(e))));
  const train: number[] = [];
  for (let i = 0; i < list.length; i++) {
    const v = vectors[photoOf[i]];
    if (!v) continue;
    const path = list.path(i);
    refuseNonFinite(v, path);
    const split = list.split(i);
    if (split === 'train') train.push(i);
    const set = sets[split];
    set.x.push(v);
    set.y.push(list.label(i));
    set.images.push({ sha256: list.sha(i), path });
  }
  // Augmented copies join the training set (only training images have them).
  const t = manifest.training;
  const copies = t?.augment ? (t.augmentCopies ?? 0) : 0;
  if (!copies) return sets;
  const ids = train.flatMap((i) => Array.from({ length: copies }, (_, k) => ({ id: augmentedId(list.sha(i), t!.augment!, k), label: list.label(i) })));
  const copyVectors = new Map<string, VectorRow>();
  await persist('reading the vector cache', () =>
    readCachedVectors(
      bus,
      fingerprint,
      ids.map((i) => i.id),
      (id, e) => {
        const v = rowOf(e);
        if (v) copyVectors.set(id, v);
      },
    ),
  );
  for (const { id, label } of ids) {
    const v = copyVectors.get(id);
    if (!v) continue;
    refuseNonFinite(v, id);
    sets.train.x.push(v);
    sets.train.y.push(label);
  }
  sets.augmented = copyVectors.size;
  return sets;
}

/** Where a half-float row is decoded to be checked (one, reused: a job may have a million rows). */
let scratch = new Float32Array(0);

/** A head trained on NaN or infinity learns nothing and reports nonsense: refuse it, naming the image. */
function refuseNonFinite(row: VectorRow, image: string): void {
  if (scratch.length !== row.length) scratch = new Float32Array(row.length);
  const v = floatsOf(row, scratch);
  for (let i = 0; i < v.length; i++) if (!Number.isFinite(v[i])) throw new Error(`the cached vector of ${image} has ${v[i]} at ${i}: refusing to train on it`);
}
