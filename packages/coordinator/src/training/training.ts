import type { Logger } from 'pino';
import { deleteCheckpoint, deleteSweepHeads, readCheckpoint, readSweepHead, writeCheckpoint, writeModelFiles, writeSweepHead, type Bus } from '@graft/protocol';
import {
  DEFAULT_SWEEP_GRID,
  defaultSweepParallelism,
  expandGrid,
  parseSweepGrid,
  pickWinner,
  runSweep,
  evaluatePredictions,
  coverageCurve,
  loadHeadModel,
  misclassifiedOf,
  modelFiles,
  packageModel,
  predict,
  rowBytes,
  trainHead,
  type EpochResult,
  type EvaluationReport,
  type SweepConfig,
  type SweepHeadResult,
  type SweepRow,
  type TrainedHead,
  type TrainingCheckpoint,
  AUDIT_FILE,
  photosPerClass,
  argmax,
  pickTrainOptions,
} from '@graft/head';
import { auditJob, deleteStoredFolds, type AuditOutcome } from './audit-job.js';
import type { JobManifest } from '../tracking/manifest-entries.js';
import { checkpointFromProto, checkpointToProto, sweepHeadFromProto, sweepHeadToProto } from './head-records.js';
import type { Persist } from '../outage.js';
import { loadJobVectors, type JobVectors } from './training-vectors.js';
import type { JobWorkInput } from './job-work.js';

export interface TrainJobInput extends JobWorkInput {
  /** After each epoch, before its checkpoint: a checkpoint is written only after this succeeds. Not in a sweep (onSweepHead). */
  onEpoch: (r: EpochResult) => void | Promise<void>;
  /** A sweep's head, trained (and stored) or restored from storage. */
  onSweepHead?: (r: SweepHeadResult, finished: number, total: number) => void | Promise<void>;
  /** The head is trained and the audit starts (a job asking for one). */
  onAudit?: () => Promise<void>;
  /** An audit fold trained (or restored from storage). */
  onAuditFold?: (restored: boolean) => void;
}

export interface TrainJobResult {
  report: EvaluationReport;
  /** The audit, when the job asked for one. */
  audit?: AuditOutcome;
  /** What the split left short (splitWarning). */
  warning?: string;
  trainImages: number;
  validationImages: number;
  resumedFromEpoch: number;
}

/** The heads of a job's sweep stored so far (a coordinator that took over trains only the rest). */
async function storedSweepHeads(
  bus: Bus,
  jobId: string,
  configs: readonly SweepConfig[],
  dim: number,
  classes: string[],
  persist: Persist,
  log: Logger,
): Promise<Map<string, SweepHeadResult>> {
  const done = new Map<string, SweepHeadResult>();
  for (const c of configs) {
    try {
      const stored = await persist('reading a sweep head', () => readSweepHead(bus, jobId, c.id));
      if (stored) done.set(c.id, sweepHeadFromProto(stored, dim, classes));
    } catch (err) {
      if ((err as Error).name !== 'ProtocolError') throw err;
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

async function storedCheckpoint(bus: Bus, jobId: string, log: Logger, persist: Persist): Promise<TrainingCheckpoint | undefined> {
  try {
    const c = await persist('reading the checkpoint', () => readCheckpoint(bus, jobId));
    return c && checkpointFromProto(c);
  } catch (err) {
    if ((err as Error).name !== 'ProtocolError') throw err;
    log.warn({ err }, 'checkpoint unreadable: training starts afresh');
    return undefined;
  }
}

/**
 * Trains, evaluates and stores a job's head: resumes from the job's checkpoint when
 * there is one, checkpoints every epoch, and writes the model folder's files to the
 * artifacts store under `<job>/`.
 */
export async function trainJob(input: TrainJobInput): Promise<TrainJobResult> {
  const { bus, manifest, backbone, log, persist } = input;
  const sets = await loadJobVectors(bus, manifest, input.images, backbone.fingerprint, persist);
  refuseEmptyClasses(manifest, sets);
  const resumeFrom = await storedCheckpoint(bus, manifest.jobId, log, persist);
  log.info(
    {
      train: sets.train.x.length - sets.augmented,
      augmented: sets.augmented,
      validation: sets.validation.x.length,
      test: sets.test.x.length,
      vectorBytes: rowBytes(sets.train.x) + rowBytes(sets.validation.x) + rowBytes(sets.test.x),
      resumeFromEpoch: resumeFrom?.epoch ?? 0,
    },
    'training the head',
  );
  const trained: { head: TrainedHead; sweep?: EvaluationReport['sweep'] } = manifest.training?.sweep
    ? await trainSweep(input, sets)
    : { head: await trainOneHead(input, sets, resumeFrom) };
  const { report, audit } = await evaluateAndStore(input, sets, trained.head, trained.sweep);
  const warning = splitWarning(manifest.classes, sets);
  return {
    report,
    ...(audit ? { audit } : {}),
    ...(warning ? { warning } : {}),
    trainImages: sets.train.x.length - sets.augmented,
    validationImages: sets.validation.x.length,
    resumedFromEpoch: resumeFrom?.epoch ?? 0,
  };
}

/**
 * A class with no training photo left (every one failed to decode, or none was in the training
 * split) would give a model that never predicts it: the job fails before training, naming it.
 */
function refuseEmptyClasses(manifest: JobManifest, sets: JobVectors): void {
  const counts = photosPerClass(sets.train.y.slice(0, sets.train.y.length - sets.augmented), manifest.classes.length);
  const empty = manifest.classes.filter((_, i) => counts[i] === 0);
  if (empty.length)
    throw new Error(
      `${empty.length === 1 ? 'class' : 'classes'} ${empty.join(', ')} ${empty.length === 1 ? 'has' : 'have'} no training image left (all failed, or none in the training split): graft status ${manifest.jobId} --failed lists the failures`,
    );
}

/** What a split leaves short: classes with no validation or no test image (accuracy on them says nothing). */
function splitWarning(classes: readonly string[], sets: JobVectors): string | undefined {
  const missing = (ys: readonly number[]) => {
    const counts = photosPerClass(ys, classes.length);
    return classes.filter((_, i) => counts[i] === 0);
  };
  const parts: string[] = [];
  for (const [name, ys] of [
    ['test', sets.test.y],
    ['validation', sets.validation.y],
  ] as const) {
    const m = missing(ys);
    if (m.length === classes.length) parts.push(`no class has a ${name} image`);
    else if (m.length) parts.push(`${m.slice(0, 5).join(', ')}${m.length > 5 ? ', ...' : ''} ${m.length === 1 ? 'has' : 'have'} no ${name} image`);
  }
  return parts.length ? `${parts.join('; ')}: raise --test-percent / --validation-percent or fix the sets with --splits` : undefined;
}

/** Trains one head with the job's options, checkpointing every epoch. */
async function trainOneHead(input: TrainJobInput, sets: JobVectors, resumeFrom: TrainingCheckpoint | undefined): Promise<TrainedHead> {
  const { bus, manifest, backbone, persist } = input;
  const dataset = { dim: backbone.dim, classes: manifest.classes, train: sets.train, validation: sets.validation };
  return trainHead(dataset, pickTrainOptions(manifest.training), {
    resumeFrom,
    shouldStop: input.shouldStop,
    onEpoch: input.onEpoch,
    checkpoint: (c) => persist('writing the checkpoint', () => writeCheckpoint(bus, manifest.jobId, checkpointToProto(c))),
  });
}

/** Trains the job's grid of heads (each stored as it finishes) and picks the winner on validation accuracy. */
async function trainSweep(input: TrainJobInput, sets: JobVectors): Promise<{ head: TrainedHead; sweep: NonNullable<EvaluationReport['sweep']> }> {
  const { bus, manifest, backbone, log, persist } = input;
  const jobId = manifest.jobId;
  const grid = manifest.training!.sweepGrid ? parseSweepGrid(manifest.training!.sweepGrid, `the sweep grid of job ${jobId}`) : DEFAULT_SWEEP_GRID;
  const configs = expandGrid(grid, pickTrainOptions(manifest.training), manifest.classes.length);
  const done = await storedSweepHeads(bus, jobId, configs, backbone.dim, manifest.classes, persist, log);
  const parallel = defaultSweepParallelism();
  log.info({ heads: configs.length, restored: done.size, parallel }, 'sweep: training a grid of heads on the cached vectors');
  const t0 = performance.now();
  const dataset = { dim: backbone.dim, classes: manifest.classes, train: sets.train, validation: sets.validation };
  const results = await runSweep(dataset, configs, {
    done,
    parallel,
    shouldStop: input.shouldStop,
    onHead: async (r, finished, total) => {
      if (!r.restored) await persist('storing a sweep head', () => writeSweepHead(bus, jobId, sweepHeadToProto(r)));
      log.info(
        { head: r.id, restored: Boolean(r.restored), valAccuracy: r.valAccuracy, valLoss: r.valLoss, seconds: r.seconds, finished, total },
        r.restored ? 'sweep head restored' : 'sweep head trained',
      );
      await input.onSweepHead?.(r, finished, total);
    },
  });
  const winner = pickWinner(results);
  log.info({ winner: winner.id, valAccuracy: winner.valAccuracy, options: winner.options }, 'sweep: winner chosen on validation accuracy');
  return { head: winner.head, sweep: { heads: sweepRows(results), winner: winner.id, seconds: (performance.now() - t0) / 1000, parallel } };
}

/**
 * Evaluates the exported (folded) model itself, so the figures describe exactly what users get,
 * audits the photos when asked (before anything is stored: a takeover mid-audit resumes from the
 * checkpoint and the stored folds), stores the model folder's files (and audit.json), and removes
 * the checkpoint, sweep heads and audit folds it no longer needs.
 */
async function evaluateAndStore(
  input: TrainJobInput,
  sets: JobVectors,
  head: TrainedHead,
  sweep: EvaluationReport['sweep'],
): Promise<{ report: EvaluationReport; audit?: AuditOutcome }> {
  const { bus, manifest, backbone, log, persist } = input;
  const jobId = manifest.jobId;
  const provisional = await packageModel(head, backbone, evaluatePredictions([], [], manifest.classes), jobId);
  const model = await loadHeadModel(provisional);
  const probs = await predict(model, sets.test.x, backbone.dim);
  // graft predict's threshold is chosen on validation photos, and checked on the test photos.
  const validation = coverageCurve(await predict(model, sets.validation.x, backbone.dim), sets.validation.y);
  model.dispose();
  const evaluated = evaluatePredictions(probs, sets.test.y, manifest.classes, sets.train.y.slice(0, sets.train.y.length - sets.augmented));
  const report: EvaluationReport = {
    // Per-class training counts are of photos: the augmented copies come after them.
    ...evaluated,
    coverage: { validation, test: evaluated.coverage!.test },
    splits: {
      train: sets.train.x.length - sets.augmented,
      validation: sets.validation.x.length,
      test: sets.test.x.length,
      ...(sets.augmented ? { augmented: sets.augmented } : {}),
    },
    history: head.history,
    misclassified: misclassifiedOf(probs, sets.test.y, manifest.classes, sets.test.images),
    ...(sweep ? { sweep } : {}),
  };
  if (manifest.training?.audit) await input.onAudit?.();
  const audit = manifest.training?.audit
    ? await auditJob({
        bus,
        manifest,
        sets,
        dim: backbone.dim,
        options: head.options,
        testPredicted: Int32Array.from(probs, (p) => argmax(p)),
        log,
        persist,
        shouldStop: input.shouldStop,
        onFold: input.onAuditFold,
      })
    : undefined;
  const files: Record<string, Uint8Array> = modelFiles({ ...provisional, report });
  if (audit && 'report' in audit) files[AUDIT_FILE] = new TextEncoder().encode(`${JSON.stringify(audit.report, null, 2)}\n`);
  await persist('storing the model files', () => writeModelFiles(bus, jobId, files));
  // Leftovers cost only space: a checkpoint of a finished job is never read again.
  await persist('deleting the checkpoint', () => deleteCheckpoint(bus, jobId)).catch((err: unknown) => log.warn({ err }, 'checkpoint not deleted'));
  const left = await deleteSweepHeads(bus, jobId, sweep?.heads.map((h) => h.id) ?? []);
  if (left.length) log.warn({ heads: left.length }, 'stored sweep heads not deleted');
  if (audit) await deleteStoredFolds(bus, manifest, log);
  return { report, ...(audit ? { audit } : {}) };
}
