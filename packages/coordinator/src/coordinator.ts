import { setTimeout as sleep } from 'node:timers/promises';
import type { ConsumerMessages, JsMsg } from '@nats-io/jetstream';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import {
  BUCKETS,
  BUCKET_STREAMS,
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
  isStoreFull,
  isTerminal,
  jobStateName,
  modelObjects,
  publishJobEvent,
  queuedStatus,
  readJobRecord,
  readManifest,
  ProtocolError,
  storeFullMessage,
  vectorKey,
  writeJobRecord,
  type Bus,
  type DatasetManifest,
  type ExtractionTask,
  type JobEventBody,
  type JobStatus,
  type VectorBatch,
} from '@graft/protocol';
import { formatReport, SweepAborted, TrainingAborted } from '@graft/head';
import { backboneFromFiles, fetchBackbone, modelBundle, parseImageId, requestedSpec, resolvedFields, resolvedFromFields, type ModelFiles, type ResolvedBackbone } from '@graft/vision';
import { inBatches } from './batches.js';
import { ManifestError, validateManifest } from './manifest.js';
import { coordinatorMetrics, type CoordinatorMetrics } from './metrics.js';
import { resolveCoordinatorOptions, type CoordinatorOptions, type ResolvedCoordinatorOptions } from './options.js';
import { Leadership } from './leadership.js';
import { Abandoned, waitOutOutages, type Persist } from './outage.js';
import { TaskQueue } from './task-queue.js';
import { JobTracker, type ActiveJob } from './tracker.js';
import { trainJob } from './training.js';

export type CoordinatorState = 'running' | 'closing' | 'closed';

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
/** Times the pre-training check extracts missing vectors again before failing those images. */
const MAX_MISSING_ROUNDS = 2;

class CoordinatorImpl implements Coordinator {
  state: CoordinatorState = 'running';
  readonly closed: Promise<void>;
  private readonly log: Logger;
  private readonly metrics: CoordinatorMetrics;
  private jobs: JobTracker;
  private readonly queue: TaskQueue;
  private readonly leadership: Leadership;
  /** Bus operations, tried again through outages while this coordinator leads. */
  private readonly persist: Persist;
  /** Whether this coordinator holds the lease (it may still be stale: see {@link mayAct}). */
  private leading = false;
  /** Jobs whose manifest is being handled right now. */
  private readonly starting = new Set<string>();
  private readonly backbones = new Map<string, Promise<ResolvedBackbone>>();
  private readonly consumers: ConsumerMessages[] = [];
  private trainingQueue: Promise<void> = Promise.resolve();
  /** Best validation accuracy of each sweeping job's heads so far (for the gauge). */
  private readonly sweepBest = new Map<string, number>();
  private flushTimer?: NodeJS.Timeout;
  private flushing = false;

  constructor(
    private readonly bus: Bus,
    private readonly o: ResolvedCoordinatorOptions,
    deps: CoordinatorDeps,
  ) {
    this.log = deps.logger.child({ component: 'coordinator', coordinator: o.coordinatorId });
    this.jobs = new JobTracker(bus.vectors);
    this.persist = waitOutOutages(this.log, () => this.state === 'running' && this.leading);
    this.queue = new TaskQueue(bus, { taskSize: o.taskSize, ackWaitMs: o.taskAckWaitMs, maxDeliver: o.taskMaxDeliver }, () => this.state === 'running', this.persist);
    this.leadership = new Leadership(bus.leases, o.coordinatorId, o.leaseTtlMs, this.log);
    this.metrics = coordinatorMetrics(deps.registry ?? new Registry(), () => this.queue.depth());
    this.metrics.info.set({ backend: deps.backend ?? 'unknown' }, 1);
    this.metrics.leader.set(0);
    this.updateJobGauge();
    this.closed = this.run();
  }

  /** Standby until this coordinator holds the lease, then leads until it is lost (back to standby) or closed. */
  private async run(): Promise<void> {
    while (this.state === 'running') {
      if (!(await this.leadership.acquire(() => this.state !== 'running'))) break;
      this.leading = true;
      this.metrics.leader.set(1);
      this.leadership.keep(() => this.stepDown());
      try {
        await this.lead();
      } catch (err) {
        if (!(err instanceof Abandoned)) this.log.error({ err }, 'leading failed: standing down and trying again');
      }
      this.leading = false;
      this.metrics.leader.set(0);
      for (const c of this.consumers.splice(0)) c.stop();
      await this.trainingQueue;
      clearInterval(this.flushTimer);
      // A clean slate for the next term: the next leader (maybe this one) rebuilds from JetStream.
      this.jobs = new JobTracker(this.bus.vectors);
      this.updateJobGauge();
      if (this.state === 'running') await sleep(1000);
    }
    await this.leadership.release();
    this.state = 'closed';
    this.log.info('coordinator stopped');
  }

  /** One term as the leader: resume unfinished jobs, then consume manifests and results. */
  private async lead(): Promise<void> {
    await this.recoverJobs();
    this.flushTimer = setInterval(() => void this.flush(), this.o.statusIntervalMs);
    const [m, r] = await this.persist('opening the consumers', async () => {
      const manifests = await this.bus.js.consumers.get(STREAMS.manifests, CONSUMERS.manifests);
      const results = await this.bus.js.consumers.get(STREAMS.results, CONSUMERS.results);
      return [await manifests.consume({ max_messages: 4 }), await results.consume({ max_messages: 64 })];
    });
    this.consumers.push(m, r);
    if (!this.mayAct()) for (const c of this.consumers) c.stop(); // lost or closed meanwhile
    const stopDeadTasks = this.queue.watchDeadTasks((task, deliveries) => this.onDeadTask(task, deliveries), this.log);
    this.log.info('coordinator started');
    await Promise.all([this.drain(m, (x) => this.onManifest(x)), this.drain(r, (x) => this.onResults(x))]);
    stopDeadTasks();
    await this.trainingQueue;
    clearInterval(this.flushTimer);
    if (this.mayAct()) await this.flush();
  }

  /** The lease went to another coordinator: stop at once (training stops after its epoch). */
  private stepDown(): void {
    this.leading = false;
    for (const c of this.consumers) c.stop();
  }

  /**
   * Whether this coordinator may change anything now: it leads, and its lease was renewed
   * within the TTL (a paused or cut-off leader stops before a standby can take over).
   */
  private mayAct(): boolean {
    return this.state === 'running' && this.leading && this.leadership.fresh();
  }

  private async drain(msgs: ConsumerMessages, handle: (m: JsMsg) => Promise<void>): Promise<void> {
    for await (const msg of msgs) {
      if (!this.mayAct()) {
        msg.nak(REDELIVERY_DELAY_MS); // for whoever leads next
        continue;
      }
      try {
        await handle(msg);
      } catch (err) {
        // Not the message's fault (stopping, or a lost race for a job record): hand it back.
        if (!(err instanceof Abandoned)) this.log.error({ err, subject: msg.subject }, 'message handling failed: will be redelivered');
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
    const existing = await this.persist('reading a job record', () => readJobRecord(this.bus, manifest.jobId)).catch((err: unknown) => {
      if (err instanceof Abandoned) throw err;
      return undefined; // unreadable: the job starts afresh
    });
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
      // Not the job's fault (stopping, or somebody else wrote its record): look again on redelivery.
      if (err instanceof JobRecordConflict || err instanceof Abandoned) throw err;
      const reason = err instanceof ManifestError ? err.message : `cannot start: ${(err as Error).message}`;
      log.error({ err }, 'job refused');
      this.metrics.manifests.inc({ outcome: 'refused' });
      const status = existing?.status ?? queuedStatus(manifest);
      status.state = JobState.JOB_STATE_FAILED;
      status.error = reason;
      const revision = (err as { recordRevision?: number }).recordRevision ?? existing?.revision ?? 0;
      await this.persist('recording a refused job', () => this.putRecord(status, revision));
      await this.event(status.jobId, { state: status.state });
      await this.event(status.jobId, { message: reason });
    } finally {
      clearInterval(keepAlive);
      this.starting.delete(manifest.jobId);
    }
    msg.ack();
  }

  /**
   * The backbone a manifest asks for, resolved once per process: fetched under the operator's
   * source policy (no local files unless allowed; size, redirect and path checks), loaded to learn
   * its fingerprint and dimension, and put in the model store, where workers load it from.
   */
  private resolveBackbone(manifest: DatasetManifest, log: Logger): Promise<ResolvedBackbone> {
    const spec = requestedSpec(manifest.backbone ?? {});
    const key = JSON.stringify(spec);
    let p = this.backbones.get(key);
    if (!p) {
      p = (async () => {
        const fetched = await fetchBackbone(spec, {
          cacheDir: this.o.cacheDir,
          allowFiles: this.o.allowModelFiles,
          maxBytes: this.o.maxModelBytes,
          onWarning: (w) => log.warn(w),
          onSource: (url) => log.info({ source: url }, 'auto backbone: loaded from this source'),
        });
        const b = await backboneFromFiles(fetched);
        b.dispose(); // the coordinator needs the fingerprint and dimension, not the model
        await this.storeModel(b.info, fetched.files, log);
        return b.info;
      })();
      this.backbones.set(key, p);
      p.catch(() => this.backbones.delete(key));
    }
    return p;
  }

  /** Puts a resolved backbone in the model store (once: the fingerprint names its content). */
  private async storeModel(b: ResolvedBackbone, files: ModelFiles, log: Logger): Promise<void> {
    const names = { json: modelObjects.json(b.fingerprint), weights: modelObjects.weights(b.fingerprint) };
    const stored = await this.persist('reading the model store', () => this.bus.models.info(names.json));
    if (stored && !stored.deleted) return;
    const bundle = modelBundle(files);
    try {
      // Weights first: model.json is the mark of a complete entry.
      await this.persist('storing a model', () => this.bus.models.putBlob({ name: names.weights }, bundle.weights));
      await this.persist('storing a model', () => this.bus.models.putBlob({ name: names.json }, bundle.modelJson));
    } catch (err) {
      if (isStoreFull(err)) throw new Error(`cannot put the backbone where workers load it: ${storeFullMessage('models', BUCKETS.models)}`, { cause: err });
      throw err;
    }
    log.info({ fingerprint: b.fingerprint, bytes: bundle.weights.byteLength }, 'backbone put in the model store for the workers');
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
      await this.persist('reading the vector cache', () => this.jobs.scan(job, true));
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
      // A failure after the record was written must be recorded over that revision.
      if (job.revision !== revision && err instanceof Error) Object.assign(err, { recordRevision: job.revision });
      throw err;
    }
    this.checkExtractionDone(job);
  }

  /** Refuses a manifest naming images that were never uploaded: nothing is enqueued for it. */
  private async checkImagesStored(job: ActiveJob, ids: string[]): Promise<void> {
    const missing: string[] = [];
    // An augmented copy is made from its photo: the photo must be stored.
    const shas = [...new Set(ids.map((id) => parseImageId(id)?.sha256 ?? id))];
    await inBatches(shas, 64, async (sha) => {
      const info = await this.persist('reading the image store', () => this.bus.images.info(sha));
      if (!info || info.deleted) missing.push(...(job.pathsBySha.get(sha) ?? [sha]));
    });
    if (missing.length) throw new ManifestError(missing.sort().map((p) => `${p}: not in the image store (upload it first, e.g. with graft publish)`));
  }

  private async enqueue(job: ActiveJob, shas: string[], again = false): Promise<void> {
    const tasks = await this.queue.enqueue(job.manifest.jobId, job.backbone, job.manifest.vectorDtype, shas, job.log, again);
    this.metrics.tasksEnqueued.inc(tasks);
  }

  /** Drops a job from memory (and from the vectors it waits for). */
  private forget(job: ActiveJob): void {
    this.jobs.forget(job);
    this.sweepBest.delete(job.manifest.jobId);
    this.updateJobGauge();
  }

  // ---- results ---------------------------------------------------------------------------

  private async onResults(msg: JsMsg): Promise<void> {
    let batch: VectorBatch;
    try {
      batch = codecs.vectorBatch.decode(msg.data, `vector batch on ${msg.subject}`);
      if (!FINGERPRINT.test(batch.backboneFingerprint)) throw new Error(`vector batch on ${msg.subject} has no valid backbone fingerprint`);
      const bad = batch.vectors.find((v) => !parseImageId(v.sha256));
      if (bad) throw new Error(`vector batch on ${msg.subject} names an image by ${JSON.stringify(bad.sha256.slice(0, 80))}, not a SHA-256 (or an augmented copy of one)`);
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
        try {
          await this.persist('caching a vector', () => this.bus.vectors.put(vectorKey(fp, v.sha256), entry));
        } catch (err) {
          if (!isStoreFull(err)) throw err;
          // A full cache is the same next time: this image fails with the reason, the job goes on.
          v.errorCode = ErrorCode.ERROR_CODE_INTERNAL;
          v.errorMessage = `its vector could not be cached: ${storeFullMessage('vectors', BUCKETS.vectors)}`;
          this.log.error({ err, image: v.sha256 }, v.errorMessage);
          return;
        }
        this.metrics.vectorsCached.inc();
      }),
    );
    const touched = new Set<ActiveJob>();
    for (const v of accepted) for (const job of this.resolve(fp, v.sha256, v.errorCode ?? 0, v.errorMessage ?? '')) if (v.errorCode && !isContentError(v.errorCode)) touched.add(job);
    // A failure that is not cached lives only in its job's record: write it before the ack.
    for (const job of touched) await this.writeRecord(job);
    if (batch.taskSeq && accepted.length) await this.queue.remove(Number(batch.taskSeq), batch.taskId);
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

  /** Counts a result for every job waiting on it; jobs with nothing left move on to training. @returns those jobs. */
  private resolve(fp: string, sha: string, code: ErrorCode, message: string): ActiveJob[] {
    const jobs = this.jobs.resolve(fp, sha, code, message);
    for (const job of jobs) this.checkExtractionDone(job);
    return jobs;
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

  private scheduleTraining(job: ActiveJob, afterRenewal = false): void {
    // One head at a time: training shares this process's single backend thread.
    this.trainingQueue = this.trainingQueue.then(async () => {
      while (afterRenewal && this.state === 'running' && this.leading && !this.leadership.fresh()) await sleep(250);
      await this.train(job);
    });
  }

  private async train(job: ActiveJob): Promise<void> {
    if (this.jobs.get(job.manifest.jobId) !== job) return;
    if (!this.mayAct()) {
      // Still the leader but the lease is stale (a bus outage): train once it is renewed.
      if (this.state === 'running' && this.leading) this.scheduleTraining(job, true);
      return;
    }
    const s = job.status;
    s.state = JobState.JOB_STATE_TRAINING;
    try {
      if (await this.vectorsMissing(job)) return;
      await this.writeRecord(job);
      await this.event(s.jobId, { state: s.state });
      const result = await trainJob({
        bus: this.bus,
        manifest: job.manifest,
        backbone: job.backbone,
        log: job.log,
        persist: this.persist,
        shouldStop: () => !this.mayAct(),
        onSweepHead: (r) => {
          if (!r.restored) this.metrics.sweepHeads.inc();
          if (r.valAccuracy > (this.sweepBest.get(s.jobId) ?? -1)) this.sweepBest.set(s.jobId, r.valAccuracy);
          this.metrics.sweepBestAccuracy.set(this.sweepBest.get(s.jobId)!);
        },
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
      if (err instanceof TrainingAborted || err instanceof SweepAborted || err instanceof Abandoned) {
        job.log.info('training paused (stopping, or the lease is not fresh); the checkpoint resumes it');
        // Still the leader, the lease only stale (a bus outage): carry on once it is renewed.
        if (this.state === 'running' && this.leading) this.scheduleTraining(job, true);
        return;
      }
      if (err instanceof JobRecordConflict) {
        void this.reclaim(job);
        return;
      }
      job.log.error({ err }, 'training failed');
      s.state = JobState.JOB_STATE_FAILED;
      // Checkpoints and the exported model go to the artifacts store.
      s.error = `training failed: ${isStoreFull(err) ? storeFullMessage('artifacts', BUCKETS.artifacts) : (err as Error).message}`;
    }
    try {
      await this.writeRecord(job);
    } catch (err) {
      // Stopping (or outvoted): the next leader resumes it from the checkpoint or its stored model.
      job.log.error({ err }, 'cannot write the final job record');
      return;
    }
    await this.event(s.jobId, { state: s.state });
    this.forget(job);
  }

  // ---- recovery and records --------------------------------------------------------------

  /** Picks up every unfinished job recorded in the jobs bucket. */
  private async recoverJobs(): Promise<void> {
    const ids = await this.persist('listing job records', async () => {
      const out: string[] = [];
      for await (const id of await this.bus.jobs.keys()) out.push(id);
      return out;
    });
    for (const id of ids) await this.recoverJob(id);
  }

  /** Picks up one job from its stored record and manifest, if it is unfinished. */
  private async recoverJob(id: string): Promise<void> {
    const rec = await this.persist('reading a job record', () => readJobRecord(this.bus, id)).catch((err: unknown) => {
      if (err instanceof Abandoned) throw err;
      return undefined;
    });
    if (!rec || isTerminal(rec.status.state) || rec.status.state === JobState.JOB_STATE_QUEUED) return;
    let manifest: DatasetManifest | undefined;
    let unreadable = false;
    try {
      manifest = await this.persist('reading a stored manifest', () => readManifest(this.bus, id));
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      this.log.error({ err, job: id }, 'stored manifest unreadable');
      unreadable = true;
    }
    if (!manifest) {
      // One unreadable job must not stop the coordinator from serving the others.
      rec.status.state = JobState.JOB_STATE_FAILED;
      rec.status.error = unreadable ? 'its stored manifest is not a readable manifest for this job' : 'its manifest is no longer in the manifests stream';
      await this.persist('recording a failed job', () => this.putRecord(rec.status, rec.revision)).catch((err: unknown) => this.log.error({ err, job: id }, 'cannot record the failure'));
      return;
    }
    await this.resume(rec.status, rec.revision, manifest);
  }

  /**
   * Checks, before training, that every image has its vector or its failure: a broker that crashed
   * can lose its most recent acknowledged writes. Images without either are extracted again (the job
   * goes back to extracting) rather than silently left out of training.
   * @returns whether the job went back to extracting.
   */
  private async vectorsMissing(job: ActiveJob): Promise<boolean> {
    await this.persist('reading the vector cache', () => this.jobs.scan(job, false));
    if (job.pending.size === 0) return false;
    job.missingRounds = (job.missingRounds ?? 0) + 1;
    if (job.missingRounds > MAX_MISSING_ROUNDS) {
      // Extracted again and still not kept: the cache refuses them (full), and trying on would never end.
      const full = await this.persist('reading the vector cache size', () => this.bus.jsm.streams.info(BUCKET_STREAMS.vectors)).then(
        (i) => i.config.max_bytes > 0 && i.state.bytes + 4096 > i.config.max_bytes,
        () => false,
      );
      const reason = `its vector was not kept by the vector cache after ${MAX_MISSING_ROUNDS + 1} extractions${full ? `: ${storeFullMessage('vectors', BUCKETS.vectors)}` : ''}`;
      job.log.error({ images: job.pending.size, full }, `vectors still missing after ${MAX_MISSING_ROUNDS} more extractions: those images fail`);
      for (const sha of [...job.pending.keys()]) this.jobs.resolve(job.backbone.fingerprint, sha, ErrorCode.ERROR_CODE_INTERNAL, reason);
      return false;
    }
    job.log.warn({ images: job.pending.size, round: job.missingRounds }, 'vectors missing from the cache before training (a broker lost recent writes, or the cache is full?): extracting them again');
    job.status.state = JobState.JOB_STATE_EXTRACTING;
    await this.writeRecord(job);
    await this.enqueueRest(job);
    return true;
  }

  /**
   * Enqueues a job's pending images that are not already on their way (in a queued task, or
   * answered in a result not yet taken): however long this coordinator was away, nothing is
   * extracted twice. @returns how many were enqueued.
   */
  private async enqueueRest(job: ActiveJob): Promise<number> {
    if (job.pending.size === 0) return 0;
    const onTheWay = await this.queue.inFlight(job.backbone.fingerprint);
    const missing = [...job.pending.keys()].filter((sha) => !onTheWay.has(sha)).sort();
    if (missing.length) await this.enqueue(job, missing, true);
    return missing.length;
  }

  /**
   * A record write of this leader was refused (the stored revision is not the one it wrote).
   * Holding the lease, only a broker that lost its most recent writes in a crash explains it:
   * pick the job up again from what is stored, as a new leader would.
   */
  private async reclaim(job: ActiveJob): Promise<void> {
    this.forget(job);
    if (!this.mayAct()) return;
    job.log.warn('the job record is not the one this coordinator wrote last (a broker lost recent writes?): resuming the job from what is stored');
    await this.recoverJob(job.manifest.jobId).catch((err: unknown) => job.log.error({ err }, 'cannot resume the job; the next leader will'));
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
    await this.persist('reading the vector cache', () => this.jobs.scan(job, false));
    if (status.state === JobState.JOB_STATE_EXTRACTING) {
      const enqueued = await this.enqueueRest(job);
      log.info({ state: jobStateName(status.state), pending: job.pending.size, onTheWay: job.pending.size - enqueued, counts: status.counts }, 'job resumed');
      this.checkExtractionDone(job);
    } else {
      log.info({ state: jobStateName(status.state), counts: status.counts }, 'job resumed');
      this.scheduleTraining(job);
    }
  }

  /**
   * Writes an active job's record over the revision it last wrote, through outages.
   * @throws JobRecordConflict when somebody else wrote it; Abandoned when stopping.
   */
  private writeRecord(job: ActiveJob): Promise<void> {
    // One write at a time per job: each names the revision the previous one made.
    const write = job.writes.then(async () => {
      job.dirty = false;
      try {
        if (!this.mayAct()) throw new Abandoned(`writing the record of ${job.manifest.jobId}`);
        job.revision = await this.persist('writing a job record', () => this.putRecord(job.status, job.revision));
      } catch (err) {
        job.dirty = true;
        throw err;
      }
    });
    job.writes = write.catch(() => undefined);
    return write;
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
      for (const job of [...this.jobs.values()]) {
        if (!job.dirty) continue;
        try {
          await this.writeRecord(job);
        } catch (err) {
          if (!(err instanceof JobRecordConflict)) throw err;
          await this.reclaim(job);
          continue;
        }
        await this.event(job.status.jobId, { progress: job.status.counts });
      }
    } catch (err) {
      this.log.debug({ err }, 'status flush stopped; will retry');
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
