import { halfVectorOf, readCachedVectors, splitOf, splitPercents, vectorOf, VectorDType, type Bus, type CachedVector, type DatasetManifest } from '@graft/protocol';
import { floatsOf, type LabelledVectors, type VectorRow } from '@graft/head';
import { augmentedId } from '@graft/vision';
import type { Persist } from './outage.js';

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
export async function loadJobVectors(bus: Bus, manifest: DatasetManifest, fingerprint: string, persist: Persist): Promise<JobVectors> {
  const classIndex = new Map(manifest.classes.map((c, i) => [c, i]));
  const sets: JobVectors = { train: { x: [], y: [], images: [] }, validation: { x: [], y: [], images: [] }, test: { x: [], y: [], images: [] }, augmented: 0 };
  const rowOf: (e: CachedVector | undefined) => VectorRow | undefined = manifest.vectorDtype === VectorDType.VECTOR_DTYPE_FLOAT16 ? halfVectorOf : vectorOf;
  const vectors = new Map<string, VectorRow | undefined>();
  const shas = [...new Set(manifest.images.map((i) => i.sha256))];
  await persist('reading the vector cache', () => readCachedVectors(bus, fingerprint, shas, (sha, e) => vectors.set(sha, rowOf(e))));
  const percents = splitPercents(manifest.training);
  for (const img of manifest.images) {
    const v = vectors.get(img.sha256);
    if (!v) continue;
    refuseNonFinite(v, img.path);
    const set = sets[splitOf(img, percents)];
    set.x.push(v);
    set.y.push(classIndex.get(img.label)!);
    set.images.push({ sha256: img.sha256, path: img.path });
  }
  // Augmented copies join the training set (only training images have them).
  const t = manifest.training;
  const copies = t?.augment ? (t.augmentCopies ?? 0) : 0;
  if (!copies) return sets;
  const train = manifest.images.filter((img) => vectors.get(img.sha256) && splitOf(img, percents) === 'train');
  const ids = train.flatMap((img) => Array.from({ length: copies }, (_, k) => ({ id: augmentedId(img.sha256, t!.augment!, k), label: classIndex.get(img.label)! })));
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
