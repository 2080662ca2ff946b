import type { Logger } from 'pino';
import {
  artifactNames,
  codecs,
  decodeVector,
  vectorKey,
  type Bus,
  type DatasetManifest,
  type NamedTensor,
  type SweepHead,
  type TrainingOptions,
} from '@graft/protocol';
import {
  DEFAULT_SWEEP_GRID,
  defaultSweepParallelism,
  expandGrid,
  parseSweepGrid,
  pickWinner,
  runSweep,
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
  type ResolvedTrainOptions,
  type SweepConfig,
  type SweepHeadResult,
  type SweepRow,
  type TrainedHead,
  type TrainingCheckpoint,
  type TrainOptions,
} from '@graft/head';
import { augmentedId, type ResolvedBackbone } from '@graft/vision';
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
  /** After each epoch, before its checkpoint: a checkpoint is written only after this succeeds. In a sweep: after each head (epoch = heads done). */
  onEpoch: (r: EpochResult) => void | Promise<void>;
  /** A sweep's head, trained (and stored) or restored from storage. */
  onSweepHead?: (r: SweepHeadResult, finished: number, total: number) => void | Promise<void>;
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
    weightDecay: t?.weightDecay ?? undefined,
    labelSmoothing: t?.labelSmoothing ?? undefined,
    hiddenUnits: t?.hiddenUnits ?? undefined,
    dropout: t?.dropout ?? undefined,
  };
}

function sweepHeadToProto(r: SweepHeadResult): SweepHead {
  const h = r.head;
  const C = h.classes.length;
  const inputs = h.hidden ? h.hidden.units : h.dim;
  const weights = [
    ...(h.hidden ? [toProto({ name: 'hidden_kernel', shape: [h.dim, h.hidden.units], values: h.hidden.kernel }), toProto({ name: 'hidden_bias', shape: [h.hidden.units], values: h.hidden.bias })] : []),
    toProto({ name: 'kernel', shape: [inputs, C], values: h.kernel }),
    toProto({ name: 'bias', shape: [C], values: h.bias }),
  ];
  return codecs.sweepHead.create({
    configId: r.id,
    optionsJson: JSON.stringify(r.options),
    valAccuracy: r.valAccuracy,
    valLoss: r.valLoss,
    bestEpoch: h.bestEpoch,
    epochs: h.history.length,
    stoppedEarly: h.stoppedEarly,
    seconds: r.seconds,
    weights,
    mean: toProto({ name: 'mean', shape: [h.dim], values: h.mean }),
    std: toProto({ name: 'std', shape: [h.dim], values: h.std }),
    history: h.history,
  }) as SweepHead;
}

function sweepHeadFromProto(m: SweepHead, dim: number, classes: string[]): SweepHeadResult {
  const w = new Map(m.weights.map((t) => [t.name, Float32Array.from(t.values)]));
  const options = JSON.parse(m.optionsJson) as ResolvedTrainOptions;
  const hidden = w.get('hidden_kernel') ? { kernel: w.get('hidden_kernel')!, bias: w.get('hidden_bias')!, units: options.hiddenUnits } : undefined;
  return {
    id: m.configId,
    options,
    valAccuracy: m.valAccuracy,
    valLoss: m.valLoss,
    seconds: m.seconds,
    head: {
      dim,
      classes,
      kernel: w.get('kernel')!,
      bias: w.get('bias')!,
      ...(hidden ? { hidden } : {}),
      mean: Float32Array.from(m.mean.values),
      std: Float32Array.from(m.std.values),
      options,
      history: m.history.map((h) => ({ epoch: h.epoch, epochs: h.epochs, loss: h.loss, accuracy: h.accuracy, valLoss: h.valLoss, valAccuracy: h.valAccuracy })),
      bestEpoch: m.bestEpoch,
      stoppedEarly: m.stoppedEarly,
    },
  };
}

/** The heads of a job's sweep stored so far (a coordinator that took over trains only the rest). */
async function storedSweepHeads(bus: Bus, jobId: string, configs: readonly SweepConfig[], dim: number, classes: string[], persist: Persist, log: Logger): Promise<Map<string, SweepHeadResult>> {
  const done = new Map<string, SweepHeadResult>();
  for (const c of configs) {
    const bytes = await persist('reading a sweep head', () => bus.artifacts.getBlob(artifactNames.sweepHead(jobId, c.id)));
    if (!bytes) continue;
    try {
      done.set(c.id, sweepHeadFromProto(codecs.sweepHead.decode(bytes, `sweep head ${c.id} of ${jobId}`), dim, classes));
    } catch (err) {
      log.warn({ err, head: c.id }, 'stored sweep head unreadable: it is trained again');
    }
  }
  return done;
}

/** A sweep's table, for report.json and report.html. */
function sweepRows(results: readonly SweepHeadResult[]): SweepRow[] {
  return results.map((r) => ({
    id: r.id,
    optimizer: r.options.optimizer,
    learningRate: r.options.learningRate,
    batchSize: r.options.batchSize,
    weightDecay: r.options.weightDecay,
    labelSmoothing: r.options.labelSmoothing,
    hiddenUnits: r.options.hiddenUnits,
    dropout: r.options.dropout,
    valAccuracy: r.valAccuracy,
    valLoss: r.valLoss,
    bestEpoch: r.head.bestEpoch,
    epochs: r.head.history.length,
    seconds: r.seconds,
    ...(r.restored ? { restored: true } : {}),
  }));
}

/** The vectors of a job's images, by split (images that failed are left out). */
async function loadSplits(bus: Bus, manifest: DatasetManifest, fingerprint: string, persist: Persist) {
  const classIndex = new Map(manifest.classes.map((c, i) => [c, i]));
  type Set = LabelledVectors & { images: { sha256: string; path: string }[] };
  const sets: { train: Set; validation: Set; test: Set; augmented: number } = {
    train: { x: [], y: [], images: [] },
    validation: { x: [], y: [], images: [] },
    test: { x: [], y: [], images: [] },
    augmented: 0,
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
  // Augmented copies join the training set (only training images have them).
  const t = manifest.training;
  const copies = t?.augment ? (t.augmentCopies ?? 0) : 0;
  if (copies) {
    const train = manifest.images.filter((img) => cache.get(img.sha256) && splitOf(img, percents) === 'train');
    const ids = train.flatMap((img) => Array.from({ length: copies }, (_, k) => ({ id: augmentedId(img.sha256, t!.augment!, k), label: classIndex.get(img.label)! })));
    const vectors = new Map<string, Float32Array>();
    await inBatches(ids, 64, async ({ id }) => {
      const e = await persist('reading the vector cache', () => bus.vectors.get(vectorKey(fingerprint, id)));
      if (!e || e.length === 0) return;
      const v = codecs.cachedVector.decode(e.value, `cached vector ${id}`);
      if (!v.errorCode) vectors.set(id, decodeVector(v.vector, v.dim, v.dtype));
    });
    for (const { id, label } of ids) {
      const v = vectors.get(id);
      if (!v) continue;
      sets.train.x.push(v);
      sets.train.y.push(label);
    }
    sets.augmented = vectors.size;
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
  log.info({ train: sets.train.x.length - sets.augmented, augmented: sets.augmented, validation: sets.validation.x.length, test: sets.test.x.length, resumeFromEpoch: resumeFrom?.epoch ?? 0 }, 'training the head');
  const dataset = { dim: backbone.dim, classes: manifest.classes, train: sets.train, validation: sets.validation };
  let head: TrainedHead;
  let sweep: EvaluationReport['sweep'];
  if (manifest.training?.sweep) {
    const grid = manifest.training.sweepGrid ? parseSweepGrid(manifest.training.sweepGrid, `the sweep grid of job ${jobId}`) : DEFAULT_SWEEP_GRID;
    const configs = expandGrid(grid, headOptions(manifest.training), manifest.classes.length);
    const done = await storedSweepHeads(bus, jobId, configs, backbone.dim, manifest.classes, persist, log);
    const parallel = defaultSweepParallelism();
    log.info({ heads: configs.length, restored: done.size, parallel }, 'sweep: training a grid of heads on the cached vectors');
    const t0 = performance.now();
    const results = await runSweep(dataset, configs, {
      done,
      parallel,
      shouldStop: input.shouldStop,
      onHead: async (r, finished, total) => {
        if (!r.restored) await persist('storing a sweep head', () => bus.artifacts.putBlob({ name: artifactNames.sweepHead(jobId, r.id) }, codecs.sweepHead.encode(sweepHeadToProto(r))));
        log.info({ head: r.id, restored: Boolean(r.restored), valAccuracy: r.valAccuracy, valLoss: r.valLoss, seconds: r.seconds, finished, total }, r.restored ? 'sweep head restored' : 'sweep head trained');
        const best = r.head.history.find((h) => h.epoch === r.head.bestEpoch) ?? r.head.history.at(-1)!;
        await input.onSweepHead?.(r, finished, total);
        await input.onEpoch({ ...best, epoch: finished, epochs: total });
      },
    });
    const winner = pickWinner(results);
    head = winner.head;
    sweep = { heads: sweepRows(results), winner: winner.id, seconds: (performance.now() - t0) / 1000, parallel };
    log.info({ winner: winner.id, valAccuracy: winner.valAccuracy, options: winner.options }, 'sweep: winner chosen on validation accuracy');
  } else {
    head = await trainHead(
      dataset,
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
  }
  // Evaluate the exported (folded) model itself: the figures describe exactly what users get.
  const provisional = await packageModel(head, backbone, evaluatePredictions([], [], manifest.classes), jobId);
  const model = await loadHeadModel(provisional);
  const probs = await predict(model, sets.test.x, backbone.dim);
  model.dispose();
  const report: EvaluationReport = {
    // Per-class training counts are of photos: the augmented copies come after them.
    ...evaluatePredictions(probs, sets.test.y, manifest.classes, sets.train.y.slice(0, sets.train.y.length - sets.augmented)),
    splits: { train: sets.train.x.length - sets.augmented, validation: sets.validation.x.length, test: sets.test.x.length, ...(sets.augmented ? { augmented: sets.augmented } : {}) },
    history: head.history,
    misclassified: misclassifiedOf(probs, sets.test.y, manifest.classes, sets.test.images),
    ...(sweep ? { sweep } : {}),
  };
  const files = modelFiles({ ...provisional, report });
  for (const [name, bytes] of Object.entries(files)) await persist(`storing ${name}`, () => bus.artifacts.putBlob({ name: artifactNames.modelFile(jobId, name) }, bytes));
  await persist('deleting the checkpoint', () => bus.artifacts.delete(artifactNames.checkpoint(jobId))).catch(() => undefined);
  for (const row of sweep?.heads ?? []) await bus.artifacts.delete(artifactNames.sweepHead(jobId, row.id)).catch(() => undefined);
  return { report, trainImages: sets.train.x.length - sets.augmented, validationImages: sets.validation.x.length, resumedFromEpoch: resumeFrom?.epoch ?? 0 };
}
