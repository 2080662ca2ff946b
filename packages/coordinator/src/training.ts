import type { Logger } from 'pino';
import {
  artifactNames,
  codecs,
  decodeVector,
  vectorKey,
  type Bus,
  type DatasetManifest,
  type NamedTensor,
  type TrainingOptions,
} from '@graft/protocol';
import {
  evaluatePredictions,
  loadHeadModel,
  misclassifiedOf,
  modelFiles,
  packageModel,
  predict,
  trainHead,
  type EpochResult,
  type EvaluationReport,
  type LabelledVectors,
  type SavedTensor,
  type TrainingCheckpoint,
  type TrainOptions,
} from '@graft/head';
import type { ResolvedBackbone } from '@graft/vision';
import { inBatches } from './batches.js';
import type { Persist } from './outage.js';
import { splitOf, splitPercents } from './splits.js';

export interface TrainJobInput {
  bus: Bus;
  manifest: DatasetManifest;
  backbone: ResolvedBackbone;
  log: Logger;
  /** Bus operations go through this: tried again through outages. */
  persist: Persist;
  /** After each epoch, before its checkpoint: a checkpoint is written only after this succeeds. */
  onEpoch: (r: EpochResult) => void | Promise<void>;
  shouldStop: () => boolean;
}

export interface TrainJobResult {
  report: EvaluationReport;
  trainImages: number;
  validationImages: number;
  resumedFromEpoch: number;
}

/**
 * The head's options from the manifest's: each absent one is left for the head to default
 * (zero is a value, never "unset").
 */
export function headOptions(t: TrainingOptions | null | undefined): TrainOptions {
  return {
    optimizer: (t?.optimizer ?? undefined) as TrainOptions['optimizer'],
    learningRate: t?.learningRate ?? undefined,
    batchSize: t?.batchSize ?? undefined,
    epochs: t?.epochs ?? undefined,
    patience: t?.patience ?? undefined,
    seed: t?.seed ?? undefined,
    standardize: t?.standardize ?? undefined,
    classWeights: (t?.classWeights ?? undefined) as TrainOptions['classWeights'],
  };
}

/** The vectors of a job's images, by split (images that failed are left out). */
async function loadSplits(bus: Bus, manifest: DatasetManifest, fingerprint: string, persist: Persist) {
  const classIndex = new Map(manifest.classes.map((c, i) => [c, i]));
  const sets: Record<'train' | 'validation' | 'test', LabelledVectors & { images: { sha256: string; path: string }[] }> = {
    train: { x: [], y: [], images: [] },
    validation: { x: [], y: [], images: [] },
    test: { x: [], y: [], images: [] },
  };
  const cache = new Map<string, Float32Array | null>();
  const shas = [...new Set(manifest.images.map((i) => i.sha256))];
  await inBatches(shas, 64, async (sha) => {
    const e = await persist('reading the vector cache', () => bus.vectors.get(vectorKey(fingerprint, sha)));
    if (!e || e.length === 0) return cache.set(sha, null);
    const v = codecs.cachedVector.decode(e.value, `cached vector ${sha}`);
    cache.set(sha, v.errorCode ? null : decodeVector(v.vector, v.dim, v.dtype));
  });
  const percents = splitPercents(manifest.training);
  for (const img of manifest.images) {
    const v = cache.get(img.sha256);
    if (!v) continue;
    const set = sets[splitOf(img, percents)];
    set.x.push(v);
    set.y.push(classIndex.get(img.label)!);
    set.images.push({ sha256: img.sha256, path: img.path });
  }
  return sets;
}

function toProto(t: SavedTensor): NamedTensor {
  return { name: t.name, shape: t.shape, values: Array.from(t.values) };
}

function fromProto(t: NamedTensor): SavedTensor {
  return { name: t.name ?? '', shape: t.shape ?? [], values: Float32Array.from(t.values ?? []) };
}

async function readCheckpoint(bus: Bus, jobId: string, log: Logger, persist: Persist): Promise<TrainingCheckpoint | undefined> {
  const bytes = await persist('reading the checkpoint', () => bus.artifacts.getBlob(artifactNames.checkpoint(jobId)));
  if (!bytes) return undefined;
  try {
    const c = codecs.checkpoint.decode(bytes, `checkpoint of ${jobId}`);
    return {
      epoch: c.epoch,
      weights: c.weights.map(fromProto),
      optimizer: c.optimizer.map(fromProto),
      bestValAccuracy: c.bestValAccuracy,
      bestValLoss: c.bestValLoss,
      bestEpoch: c.bestEpoch,
      bestWeights: c.bestWeights.map(fromProto),
      epochsWithoutImprovement: c.epochsWithoutImprovement,
      history: c.history.map((h) => ({ epoch: h.epoch, epochs: h.epochs, loss: h.loss, accuracy: h.accuracy, valLoss: h.valLoss, valAccuracy: h.valAccuracy })),
    };
  } catch (err) {
    log.warn({ err }, 'checkpoint unreadable: training starts afresh');
    return undefined;
  }
}

/**
 * Trains, evaluates and stores a job's head: resumes from the job's checkpoint when
 * there is one, checkpoints every epoch, and writes the model folder's files to the
 * artifacts bucket under `<job>/`.
 */
export async function trainJob(input: TrainJobInput): Promise<TrainJobResult> {
  const { bus, manifest, backbone, log, persist } = input;
  const jobId = manifest.jobId;
  const sets = await loadSplits(bus, manifest, backbone.fingerprint, persist);
  const resumeFrom = await readCheckpoint(bus, jobId, log, persist);
  log.info({ train: sets.train.x.length, validation: sets.validation.x.length, test: sets.test.x.length, resumeFromEpoch: resumeFrom?.epoch ?? 0 }, 'training the head');
  const head = await trainHead(
    { dim: backbone.dim, classes: manifest.classes, train: sets.train, validation: sets.validation },
    headOptions(manifest.training),
    {
      resumeFrom,
      shouldStop: input.shouldStop,
      onEpoch: input.onEpoch,
      checkpoint: async (c) => {
        const bytes = codecs.checkpoint.encode({
          jobId,
          epoch: c.epoch,
          weights: c.weights.map(toProto),
          optimizer: c.optimizer.map(toProto),
          bestValAccuracy: c.bestValAccuracy,
          bestValLoss: c.bestValLoss,
          bestEpoch: c.bestEpoch,
          bestWeights: c.bestWeights.map(toProto),
          epochsWithoutImprovement: c.epochsWithoutImprovement,
          history: c.history,
        });
        await persist('writing the checkpoint', () => bus.artifacts.putBlob({ name: artifactNames.checkpoint(jobId) }, bytes));
      },
    },
  );
  // Evaluate the exported (folded) model itself: the figures describe exactly what users get.
  const provisional = await packageModel(head, backbone, evaluatePredictions([], [], manifest.classes), jobId);
  const model = await loadHeadModel(provisional);
  const probs = await predict(model, sets.test.x, backbone.dim);
  model.dispose();
  const report: EvaluationReport = {
    ...evaluatePredictions(probs, sets.test.y, manifest.classes, sets.train.y),
    splits: { train: sets.train.x.length, validation: sets.validation.x.length, test: sets.test.x.length },
    history: head.history,
    misclassified: misclassifiedOf(probs, sets.test.y, manifest.classes, sets.test.images),
  };
  const files = modelFiles({ ...provisional, report });
  for (const [name, bytes] of Object.entries(files)) await persist(`storing ${name}`, () => bus.artifacts.putBlob({ name: artifactNames.modelFile(jobId, name) }, bytes));
  await persist('deleting the checkpoint', () => bus.artifacts.delete(artifactNames.checkpoint(jobId))).catch(() => undefined);
  return { report, trainImages: sets.train.x.length, validationImages: sets.validation.x.length, resumedFromEpoch: resumeFrom?.epoch ?? 0 };
}
