import type { Logger } from 'pino';
import { deleteAuditFolds, readAuditFold, writeAuditFold, type Bus } from '@graft/protocol';
import {
  auditDataset,
  auditProblem,
  defaultSweepParallelism,
  photosPerClass,
  foldOf,
  resolveAuditOptions,
  type AuditPhoto,
  type AuditReport,
  type SplitName,
  type TrainOptions,
  type VectorRow,
} from '@graft/head';
import type { JobManifest } from '../tracking/manifest-entries.js';
import type { Persist } from '../outage.js';
import type { JobVectors } from './training-vectors.js';

/*
 * A job's audit (training option `audit`): after its head is trained, the labelled photos' cached
 * vectors are audited (label errors, duplicates, split leaks, outliers). Each fold's out-of-sample
 * probabilities are stored as soon as they exist, so a coordinator that takes over mid-audit trains
 * only the folds still missing.
 */

export interface AuditJobInput {
  bus: Bus;
  manifest: JobManifest;
  sets: JobVectors;
  dim: number;
  options: TrainOptions;
  /** The trained head's predicted class for each test photo, in sets.test order. */
  testPredicted: Int32Array;
  log: Logger;
  persist: Persist;
  shouldStop: () => boolean;
  onFold?: (restored: boolean) => void;
}

/** The audit's report, or why the job is too small for one. */
export type AuditOutcome = { report: AuditReport } | { skipped: string };

/** The photos of a job's splits, in one list (augmented copies left out: they are not photos). */
export function auditPhotos(sets: JobVectors): { photos: AuditPhoto[]; vectors: VectorRow[]; predicted: Int32Array; testStart: number } {
  const photos: AuditPhoto[] = [];
  const vectors: VectorRow[] = [];
  let testStart = 0;
  for (const split of ['train', 'validation', 'test'] as SplitName[]) {
    const s = sets[split];
    if (split === 'test') testStart = photos.length;
    s.images.forEach((img, i) => {
      photos.push({ sha256: img.sha256, path: img.path, label: s.y[i], split });
      vectors.push(s.x[i]);
    });
  }
  return { photos, vectors, predicted: new Int32Array(photos.length).fill(-1), testStart };
}

/** Audits a trained job's photos, resuming from its stored folds. */
export async function auditJob(input: AuditJobInput): Promise<AuditOutcome> {
  const { bus, manifest, log, persist } = input;
  const jobId = manifest.jobId;
  const o = resolveAuditOptions({ folds: manifest.training?.auditFolds ?? undefined });
  const { photos, vectors, predicted, testStart } = auditPhotos(input.sets);
  predicted.set(input.testPredicted, testStart);
  const problem = auditProblem(
    manifest.classes,
    photosPerClass(
      photos.map((p) => p.label),
      manifest.classes.length,
    ),
    o.folds,
  );
  if (problem) {
    log.warn({ problem }, 'audit skipped');
    return { skipped: problem };
  }
  const done = await storedFolds(input, photos, o.folds);
  log.info({ photos: photos.length, folds: o.folds, restored: done.size }, 'auditing the labelled photos (cached vectors only)');
  for (let k = 0; k < done.size; k++) input.onFold?.(true);
  const report = await auditDataset({ dim: input.dim, classes: manifest.classes, photos, vectors, options: input.options, predicted }, o, {
    done,
    // Fold heads train on worker threads like a sweep's: one per core on single-threaded backends.
    parallel: defaultSweepParallelism(),
    shouldStop: input.shouldStop,
    onFold: async (k, probs) => {
      await persist('storing an audit fold', () =>
        writeAuditFold(bus, jobId, { fold: k, folds: o.folds, photos: probs.length / manifest.classes.length, probabilities: probs }),
      );
      input.onFold?.(false);
      log.info({ fold: k, folds: o.folds }, 'audit fold trained and stored');
    },
  });
  log.info(
    {
      labelIssues: report.labelIssues.length,
      duplicates: report.duplicates.length,
      leaks: report.leaks.pairs.length,
      outliers: report.outliers.length,
      seconds: report.seconds,
    },
    'audit done',
  );
  return { report };
}

/** Folds stored by an earlier leader, when they are of this audit (same K, same fold sizes). */
async function storedFolds(input: AuditJobInput, photos: AuditPhoto[], K: number): Promise<Map<number, Float32Array>> {
  const C = input.manifest.classes.length;
  const fold = foldOf(
    photos.map((p) => p.label),
    C,
    K,
    input.options.seed ?? 1,
  );
  const size = new Array<number>(K).fill(0);
  for (const f of fold) size[f]++;
  const done = new Map<number, Float32Array>();
  for (let k = 0; k < K; k++) {
    try {
      const f = await input.persist('reading an audit fold', () => readAuditFold(input.bus, input.manifest.jobId, k));
      if (f && f.folds === K && f.photos === size[k] && f.probabilities.length === size[k] * C) done.set(k, Float32Array.from(f.probabilities));
    } catch (err) {
      if ((err as Error).name !== 'ProtocolError') throw err;
      input.log.warn({ err, fold: k }, 'stored audit fold unreadable: it is trained again');
    }
  }
  return done;
}

/** Removes a finished audit's folds (leftovers only cost space). */
export async function deleteStoredFolds(bus: Bus, manifest: JobManifest, log: Logger): Promise<void> {
  const left = await deleteAuditFolds(bus, manifest.jobId, resolveAuditOptions({ folds: manifest.training?.auditFolds ?? undefined }).folds);
  if (left) log.warn({ folds: left }, 'stored audit folds not deleted');
}
