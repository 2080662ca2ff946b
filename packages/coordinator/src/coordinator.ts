import type { ConsumerMessages, JsMsg } from '@nats-io/jetstream';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import {
  CONSUMERS,
  ErrorCode,
  JobRecordConflict,
  JobState,
  REDELIVERY_DELAY_MS,
  STREAMS,
  codecs,
  createJobRecord,
  deadLetter,
  decodeVector,
  isContentError,
  isTerminal,
  jobStateName,
  manifestSubject,
  publishJobEvent,
  queuedStatus,
  readJobRecord,
  vectorKey,
  writeJobRecord,
  type Bus,
  type DatasetManifest,
  type ExtractionTask,
  type JobEventBody,
  type JobStatus,
  type VectorBatch,
} from '@graft/protocol';
import { formatReport, TrainingAborted } from '@graft/head';
import { loadBackbone, requestedSpec, resolvedFields, resolvedFromFields, type ResolvedBackbone } from '@graft/vision';
import { inBatches } from './batches.js';
import { ManifestError, validateManifest } from './manifest.js';
import { coordinatorMetrics, type CoordinatorMetrics } from './metrics.js';
import { resolveCoordinatorOptions, type CoordinatorOptions, type ResolvedCoordinatorOptions } from './options.js';
import { TaskQueue } from './task-queue.js';
import { JobTracker, type ActiveJob } from './tracker.js';
import { trainJob } from './training.js';

export type CoordinatorState = 'running' | 'closing' | 'closed';

const SHA256 = /^[0-9a-f]{64}$/;
type BatchVector = VectorBatch['vectors'][number];
const FINGERPRINT = /^[0-9a-f]{16}$/;

/** A running coordinator. Create with {@link startCoordinator}. */
export interface Coordinator {
  readonly state: CoordinatorState;
  readonly closed: Promise<void>;
  /** Stops consuming, stops training between epochs (the checkpoint keeps it), writes job records. Idempotent. */
  close(): Promise<void>;
}

export interface CoordinatorDeps {
  logger: Logger;
  registry?: Registry;
  /** Backend in use, for the graft_coordinator_info metric. */
  backend?: string;
}

/**
 * The coordinator: takes manifests in, moves each job through its states
 * (queued -> extracting -> training -> done or failed), and collects vector batches into the
 * cache. Tasks go out through the {@link TaskQueue}; the books of what each job still waits
 * for are the {@link JobTracker}'s; job records are written with the revision last read.
 */
class CoordinatorImpl implements Coordinator {
  state: CoordinatorState = 'running';
  readonly closed: Promise<void>;
  private readonly log: Logger;
  private readonly metrics: CoordinatorMetrics;
  private readonly jobs: JobTracker;
  private readonly queue: TaskQueue;
  /** Jobs whose manifest is being handled right now. */
  private readonly starting = new Set<string>();
  private readonly backbones = new Map<string, Promise<ResolvedBackbone>>();
  private readonly consumers: ConsumerMessages[] = [];
  private trainingQueue: Promise<void> = Promise.resolve();
  private flushTimer?: NodeJS.Timeout;
  private flushing = false;

  constructor(
    private readonly bus: Bus,
    private readonly o: ResolvedCoordinatorOptions,
    deps: CoordinatorDeps,
  ) {
    this.log = deps.logger.child({ component: 'coordinator' });
    this.jobs = new JobTracker(bus.vectors);
    this.queue = new TaskQueue(bus, { taskSize: o.taskSize, ackWaitMs: o.taskAckWaitMs, maxDeliver: o.taskMaxDeliver }, () => this.state === 'running');
    this.metrics = coordinatorMetrics(deps.registry ?? new Registry(), () => this.queue.depth());
    this.metrics.info.set({ backend: deps.backend ?? 'unknown' }, 1);
    this.updateJobGauge();
    this.closed = this.run();
  }

  private async run(): Promise<void> {
    await this.recoverJobs();
    this.flushTimer = setInterval(() => void this.flush(), this.o.statusIntervalMs);
    const manifests = await this.bus.js.consumers.get(STREAMS.manifests, CONSUMERS.manifests);
    const results = await this.bus.js.consumers.get(STREAMS.results, CONSUMERS.results);
    const m = await manifests.consume({ max_messages: 4 });
    const r = await results.consume({ max_messages: 64 });
    this.consumers.push(m, r);
    const stopDeadTasks = this.queue.watchDeadTasks((task, deliveries) => this.onDeadTask(task, deliveries), this.log);
    this.log.info('coordinator started');
    await Promise.all([this.drain(m, (x) => this.onManifest(x)), this.drain(r, (x) => this.onResults(x))]);
    stopDeadTasks();
    await this.trainingQueue;
    clearInterval(this.flushTimer);
    await this.flush();
    this.state = 'closed';
    this.log.info('coordinator stopped');
  }

  private async drain(msgs: ConsumerMessages, handle: (m: JsMsg) => Promise<void>): Promise<void> {
    for await (const msg of msgs) {
      try {
        await handle(msg);
      } catch (err) {
        // Not the message's fault (bus down mid-handling): hand it back for a later try.
        this.log.error({ err, subject: msg.subject }, 'message handling failed: will be redelivered');
        msg.nak(REDELIVERY_DELAY_MS);
      }
    }
  }

  async close(): Promise<void> {
    if (this.state === 'running') {
      this.state = 'closing';
      this.log.info('closing');
      for (const c of this.consumers) c.stop();
    }
    return this.closed;
  }

  // ---- intake ----------------------------------------------------------------------------

  private async onManifest(msg: JsMsg): Promise<void> {
    let manifest: DatasetManifest;
    try {
      manifest = codecs.manifest.decode(msg.data, `manifest on ${msg.subject}`);
    } catch (err) {
      this.metrics.malformed.inc({ stream: STREAMS.manifests });
      this.metrics.manifests.inc({ outcome: 'malformed' });
      this.log.error({ err, subject: msg.subject }, 'malformed manifest: dropped');
      await deadLetter(this.bus, 'manifest', msg.data, msg.subject, (err as Error).message);
      msg.term();
      return;
    }
    if (this.jobs.has(manifest.jobId) || this.starting.has(manifest.jobId)) {
      msg.ack(); // a redelivery of a job in hand
      return;
    }
    const log = this.log.child({ job: manifest.jobId });
    const existing = await readJobRecord(this.bus, manifest.jobId).catch(() => undefined);
    if (existing && existing.status.state !== JobState.JOB_STATE_QUEUED) {
      // Redelivery after a restart: carry on from what JetStream holds.
      if (!isTerminal(existing.status.state)) await this.resume(existing.status, existing.revision, manifest);
      msg.ack();
      return;
    }
    const keepAlive = setInterval(() => msg.working(), 10_000);
    this.starting.add(manifest.jobId);
    try {
      validateManifest(manifest);
      await this.startJob(manifest, existing?.revision ?? 0, log);
      this.metrics.manifests.inc({ outcome: 'accepted' });
    } catch (err) {
      if (err instanceof JobRecordConflict) throw err; // somebody else wrote it: look again on redelivery
      const reason = err instanceof ManifestError ? err.message : `cannot start: ${(err as Error).message}`;
      log.error({ err }, 'job refused');
      this.metrics.manifests.inc({ outcome: 'refused' });
      const status = existing?.status ?? queuedStatus(manifest);
      status.state = JobState.JOB_STATE_FAILED;
      status.error = reason;
      await this.putRecord(status, existing?.revision ?? 0);
      await this.event(status.jobId, { state: status.state });
      await this.event(status.jobId, { message: reason });
    } finally {
      clearInterval(keepAlive);
      this.starting.delete(manifest.jobId);
    }
    msg.ack();
  }

  /** The backbone a manifest asks for, loaded once per process to learn its fingerprint and dimension. */
  private resolveBackbone(manifest: DatasetManifest, log: Logger): Promise<ResolvedBackbone> {
    const spec = requestedSpec(manifest.backbone ?? {});
    const key = JSON.stringify(spec);
    let p = this.backbones.get(key);
    if (!p) {
      p = loadBackbone(spec, { cacheDir: this.o.cacheDir, onWarning: (w) => log.warn(w) }).then((b) => {
        b.dispose(); // the coordinator needs the fingerprint and dimension, not the model
        return b.info;
      });
      this.backbones.set(key, p);
      p.catch(() => this.backbones.delete(key));
    }
    return p;
  }

  private async startJob(manifest: DatasetManifest, revision: number, log: Logger): Promise<void> {
    const backbone = await this.resolveBackbone(manifest, log);
    const status = queuedStatus(manifest);
    status.state = JobState.JOB_STATE_EXTRACTING;
    status.backbone = resolvedFields(backbone);
    status.warning = backbone.warning ?? '';
    const job = this.jobs.track(manifest, status, backbone, revision, log);
    this.updateJobGauge();
    try {
      await this.jobs.scan(job, true);
      const misses = [...job.pending.keys()].sort();
      await this.checkImagesStored(job, misses);
      await this.writeRecord(job);
      await this.event(status.jobId, { state: status.state });
      this.metrics.cacheHits.inc(status.counts!.cached!);
      this.metrics.cacheMisses.inc(misses.length);
      log.info({ images: manifest.images.length, cached: status.counts!.cached, toExtract: misses.length, backbone: backbone.id, fingerprint: backbone.fingerprint }, 'job started');
      if (misses.length) await this.enqueue(job, misses);
    } catch (err) {
      this.forget(job);
      throw err;
    }
    this.checkExtractionDone(job);
  }

  /** Refuses a manifest naming images that were never uploaded: nothing is enqueued for it. */
  private async checkImagesStored(job: ActiveJob, shas: string[]): Promise<void> {
    const missing: string[] = [];
    await inBatches(shas, 64, async (sha) => {
      const info = await this.bus.images.info(sha);
      if (!info || info.deleted) missing.push(...(job.pathsBySha.get(sha) ?? [sha]));
    });
    if (missing.length) throw new ManifestError(missing.sort().map((p) => `${p}: not in the image store (upload it first, e.g. with graft publish)`));
  }

  private async enqueue(job: ActiveJob, shas: string[]): Promise<void> {
    const tasks = await this.queue.enqueue(job.manifest.jobId, job.backbone, job.manifest.vectorDtype, shas, job.log);
    this.metrics.tasksEnqueued.inc(tasks);
  }

  /** Drops a job from memory (and from the vectors it waits for). */
  private forget(job: ActiveJob): void {
    this.jobs.forget(job);
    this.updateJobGauge();
  }

  // ---- results ---------------------------------------------------------------------------

  private async onResults(msg: JsMsg): Promise<void> {
    let batch: VectorBatch;
    try {
      batch = codecs.vectorBatch.decode(msg.data, `vector batch on ${msg.subject}`);
      if (!FINGERPRINT.test(batch.backboneFingerprint)) throw new Error(`vector batch on ${msg.subject} has no valid backbone fingerprint`);
      const bad = batch.vectors.find((v) => !SHA256.test(v.sha256));
      if (bad) throw new Error(`vector batch on ${msg.subject} names an image by ${JSON.stringify(bad.sha256.slice(0, 80))}, not a SHA-256`);
    } catch (err) {
      this.metrics.malformed.inc({ stream: STREAMS.results });
      this.log.error({ err, subject: msg.subject }, 'malformed vector batch: dropped');
      await deadLetter(this.bus, 'result', msg.data, msg.subject, (err as Error).message);
      msg.term();
      return;
    }
    const fp = batch.backboneFingerprint;
    const refused: string[] = [];
    const accepted: BatchVector[] = [];
    await Promise.all(
      batch.vectors.map(async (v) => {
        const problem = await this.checkVector(fp, v);
        if (problem) return void refused.push(`${v.sha256.slice(0, 12)}: ${problem}`);
        if (problem === undefined) accepted.push(v);
      }),
    );
    await Promise.all(
      accepted.map(async (v) => {
        this.metrics.vectors.inc({ kind: v.errorCode ? 'error' : 'vector' });
        if (v.errorCode && !isContentError(v.errorCode)) return; // this attempt's failure: recorded on the job only
        const entry = codecs.cachedVector.encode({ vector: v.vector, dim: v.dim, dtype: v.dtype, errorCode: v.errorCode, errorMessage: v.errorMessage });
        await this.bus.vectors.put(vectorKey(fp, v.sha256), entry);
        this.metrics.vectorsCached.inc();
      }),
    );
    for (const v of accepted) this.resolve(fp, v.sha256, v.errorCode ?? 0, v.errorMessage ?? '');
    if (refused.length) {
      const reason = `refused ${refused.length} of ${batch.vectors.length} results from worker ${JSON.stringify(batch.workerId)}: ${refused.slice(0, 5).join('; ')}`;
      this.metrics.vectors.inc({ kind: 'refused' }, refused.length);
      this.log.error({ task: batch.taskId, job: batch.jobId, worker: batch.workerId }, `vector batch dead-lettered: ${reason}`);
      await deadLetter(this.bus, 'result', msg.data, msg.subject, reason);
    }
    msg.ack();
    this.metrics.lastProgress.setToCurrentTime();
  }

  /**
   * Whether a worker's result for one image can be trusted: some job must be waiting for it,
   * and a vector must have that job's dimension and the bytes its dimension and dtype need.
   * @returns a problem (refuse it), '' (a late duplicate of a result already cached: ignore it), or undefined (accept it).
   */
  private async checkVector(fp: string, v: BatchVector): Promise<string | undefined> {
    const dim = this.jobs.expectedDim(fp, v.sha256);
    if (dim === undefined) {
      const cached = await this.bus.vectors.get(vectorKey(fp, v.sha256)).catch(() => null);
      return cached && cached.length ? '' : 'no task asked for this image';
    }
    if (v.errorCode) return undefined;
    if (v.dim !== dim) return `a ${v.dim}-d vector where the backbone gives ${dim}-d`;
    try {
      decodeVector(v.vector, dim, v.dtype);
    } catch (err) {
      return (err as Error).message;
    }
    return undefined;
  }

  /** Counts a result for every job waiting on it; jobs with nothing left move on to training. */
  private resolve(fp: string, sha: string, code: ErrorCode, message: string): void {
    for (const job of this.jobs.resolve(fp, sha, code, message)) this.checkExtractionDone(job);
  }

  /** A task JetStream gave up on: its images are answered as failed, so the job ends. */
  private onDeadTask(task: ExtractionTask, deliveries: number): void {
    const reason = `extraction gave up after ${deliveries} deliveries without an answer (a worker died on it each time: a poison image?)`;
    this.log.error({ job: task.jobId, task: task.taskId, images: task.imageSha256.length, deliveries }, 'task dead-lettered');
    this.metrics.vectors.inc({ kind: 'dead_letter' }, task.imageSha256.length);
    for (const sha of task.imageSha256) this.resolve(task.backbone!.fingerprint!, sha, ErrorCode.ERROR_CODE_INTERNAL, reason);
  }

  // ---- state machine ---------------------------------------------------------------------

  private checkExtractionDone(job: ActiveJob): void {
    if (job.pending.size > 0 || job.status.state !== JobState.JOB_STATE_EXTRACTING) return;
    job.status.state = JobState.JOB_STATE_TRAINING;
    job.dirty = true;
    const c = job.status.counts!;
    job.log.info({ cached: c.cached, extracted: c.extracted, failed: c.failed }, 'extraction complete');
    this.scheduleTraining(job);
  }

  private scheduleTraining(job: ActiveJob): void {
    // One head at a time: training shares this process's single backend thread.
    this.trainingQueue = this.trainingQueue.then(() => this.train(job));
  }

  private async train(job: ActiveJob): Promise<void> {
    if (this.state !== 'running') return;
    const s = job.status;
    s.state = JobState.JOB_STATE_TRAINING;
    try {
      await this.writeRecord(job);
      await this.event(s.jobId, { state: s.state });
      const result = await trainJob({
        bus: this.bus,
        manifest: job.manifest,
        backbone: job.backbone,
        log: job.log,
        shouldStop: () => this.state !== 'running',
        onEpoch: async (r) => {
          s.training = r;
          this.metrics.epoch.set(r.epoch);
          this.metrics.loss.set({ split: 'train' }, r.loss);
          this.metrics.loss.set({ split: 'validation' }, r.valLoss);
          this.metrics.accuracy.set({ split: 'train' }, r.accuracy);
          this.metrics.accuracy.set({ split: 'validation' }, r.valAccuracy);
          this.metrics.lastProgress.setToCurrentTime();
          await this.writeRecord(job);
          await this.event(s.jobId, { epoch: r });
        },
      });
      s.state = JobState.JOB_STATE_DONE;
      s.evaluation = {
        top1: result.report.top1,
        top5: result.report.top5,
        testImages: result.report.images,
        trainImages: result.trainImages,
        validationImages: result.validationImages,
      };
      this.metrics.testAccuracy.set(result.report.top1);
      job.log.info({ top1: result.report.top1, top5: result.report.top5, test: result.report.images, resumedFromEpoch: result.resumedFromEpoch }, `job done\n${formatReport(result.report)}`);
    } catch (err) {
      if (err instanceof TrainingAborted) {
        job.log.info({ epoch: err.epoch }, 'training paused for shutdown; the checkpoint resumes it');
        return;
      }
      if (err instanceof JobRecordConflict) {
        job.log.error({ err }, 'another writer changed this job: leaving it to them');
        this.forget(job);
        return;
      }
      job.log.error({ err }, 'training failed');
      s.state = JobState.JOB_STATE_FAILED;
      s.error = `training failed: ${(err as Error).message}`;
    }
    await this.writeRecord(job).catch((err: unknown) => job.log.error({ err }, 'cannot write the final job record'));
    await this.event(s.jobId, { state: s.state });
    this.forget(job);
  }

  // ---- recovery and records --------------------------------------------------------------

  /** Picks up every unfinished job recorded in the jobs bucket. */
  private async recoverJobs(): Promise<void> {
    const keys = await this.bus.jobs.keys();
    for await (const id of keys) {
      const rec = await readJobRecord(this.bus, id).catch(() => undefined);
      if (!rec || isTerminal(rec.status.state) || rec.status.state === JobState.JOB_STATE_QUEUED) continue;
      const stored = await this.bus.jsm.streams.getMessage(STREAMS.manifests, { last_by_subj: manifestSubject(id) }).catch(() => null);
      let manifest: DatasetManifest | undefined;
      try {
        manifest = stored ? codecs.manifest.decode(stored.data, `stored manifest of ${id}`) : undefined;
        if (manifest && manifest.jobId !== id) throw new Error(`the stored manifest of ${id} is for job ${JSON.stringify(manifest.jobId)}`);
      } catch (err) {
        this.log.error({ err, job: id }, 'stored manifest unreadable');
        manifest = undefined;
      }
      if (!manifest) {
        // One unreadable job must not stop the coordinator from serving the others.
        rec.status.state = JobState.JOB_STATE_FAILED;
        rec.status.error = stored ? 'its stored manifest is not a readable manifest for this job' : 'its manifest is no longer in the manifests stream';
        await this.putRecord(rec.status, rec.revision).catch((err: unknown) => this.log.error({ err, job: id }, 'cannot record the failure'));
        continue;
      }
      await this.resume(rec.status, rec.revision, manifest);
    }
  }

  private async resume(status: JobStatus, revision: number, manifest: DatasetManifest): Promise<void> {
    const log = this.log.child({ job: status.jobId });
    if (!status.backbone?.fingerprint) {
      // Stopped before the backbone was resolved: start over.
      await this.startJob(manifest, revision, log);
      return;
    }
    const job = this.jobs.track(manifest, status, resolvedFromFields(status.backbone), revision, log);
    this.updateJobGauge();
    await this.jobs.scan(job, false);
    log.info({ state: jobStateName(status.state), pending: job.pending.size, counts: status.counts }, 'job resumed');
    if (status.state === JobState.JOB_STATE_EXTRACTING) {
      // Tasks may have been lost only if the manifest was never acknowledged; republishing is deduplicated.
      if (job.pending.size) await this.enqueue(job, [...job.pending.keys()].sort());
      this.checkExtractionDone(job);
    } else this.scheduleTraining(job);
  }

  /** Writes an active job's record over the revision it last wrote. @throws JobRecordConflict */
  private async writeRecord(job: ActiveJob): Promise<void> {
    job.dirty = false;
    try {
      job.revision = await this.putRecord(job.status, job.revision);
    } catch (err) {
      job.dirty = true;
      throw err;
    }
  }

  /** Creates (revision 0) or replaces a record. @returns the new revision. */
  private putRecord(status: JobStatus, revision: number): Promise<number> {
    return revision ? writeJobRecord(this.bus, status, revision) : createJobRecord(this.bus, status);
  }

  private async event(jobId: string, e: JobEventBody): Promise<void> {
    await publishJobEvent(this.bus, jobId, e).catch((err: unknown) => this.log.debug({ err }, 'event not published'));
  }

  /** Writes records of jobs whose counts moved, with a progress event each. */
  private async flush(): Promise<void> {
    if (this.flushing) return;
    this.flushing = true;
    try {
      for (const job of this.jobs.values()) {
        if (!job.dirty) continue;
        await this.writeRecord(job);
        await this.event(job.status.jobId, { progress: job.status.counts });
      }
    } catch (err) {
      this.log.debug({ err }, 'status flush failed; will retry');
    } finally {
      this.flushing = false;
    }
  }

  private updateJobGauge(): void {
    // Every state always has a series (0 when empty), so dashboards never go blank.
    const counts = new Map(Object.values(JobState).filter((v): v is JobState => typeof v === 'number' && v > 0).map((s) => [jobStateName(s), 0]));
    for (const j of this.jobs.values()) counts.set(jobStateName(j.status.state), (counts.get(jobStateName(j.status.state)) ?? 0) + 1);
    for (const [state, n] of counts) this.metrics.jobs.set({ state }, n);
  }
}

/**
 * Starts the coordinator on a bus: resumes unfinished jobs, then consumes manifests and
 * vector batches. Only one coordinator should run per bus.
 * @throws RangeError for bad options.
 */
export async function startCoordinator(bus: Bus, options: CoordinatorOptions, deps: CoordinatorDeps): Promise<Coordinator> {
  return new CoordinatorImpl(bus, resolveCoordinatorOptions(options), deps);
}
