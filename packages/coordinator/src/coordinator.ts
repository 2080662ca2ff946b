import { setTimeout as sleep } from 'node:timers/promises';
import type { ConsumerMessages, JsMsg } from '@nats-io/jetstream';
import type { Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import {
  CONSUMERS,
  ErrorCode,
  JobState,
  MAX_DELIVERIES_ADVISORY,
  STREAMS,
  Split,
  codecs,
  ensureExtractorConsumer,
  eventSubject,
  isTerminal,
  jobStateName,
  manifestSubject,
  pb,
  taskSubject,
  vectorKey,
  type Bus,
  type DatasetManifest,
  type JobEvent,
  type JobStatus,
  type VectorBatch,
} from '@graft/protocol';
import { formatReport, TrainingAborted } from '@graft/head';
import { loadBackbone, parseBackbone, type ResolvedBackbone } from '@graft/vision';
import { createHash } from 'node:crypto';
import { ManifestError, validateManifest } from './manifest.js';
import { coordinatorMetrics, type CoordinatorMetrics } from './metrics.js';
import { resolveCoordinatorOptions, type CoordinatorOptions, type ResolvedCoordinatorOptions } from './options.js';
import { assignSplit } from './splits.js';
import { JobTracker, type ActiveJob } from './tracker.js';
import { trainJob } from './training.js';
import { inBatches } from './batches.js';

export type CoordinatorState = 'running' | 'closing' | 'closed';

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

/** Errors that depend only on an image's bytes: cached like vectors, never retried. */
const CONTENT_ERRORS = new Set<ErrorCode>([ErrorCode.ERROR_CODE_EMPTY, ErrorCode.ERROR_CODE_DECODE_FAILED, ErrorCode.ERROR_CODE_TOO_LARGE]);

class CoordinatorImpl implements Coordinator {
  state: CoordinatorState = 'running';
  readonly closed: Promise<void>;
  private readonly log: Logger;
  private readonly metrics: CoordinatorMetrics;
  private readonly jobs: JobTracker;
  /** Jobs whose manifest is being handled right now. */
  private readonly starting = new Set<string>();
  private readonly backbones = new Map<string, Promise<ResolvedBackbone>>();
  private readonly consumers: ConsumerMessages[] = [];
  private trainingQueue: Promise<void> = Promise.resolve();
  private flushTimer?: NodeJS.Timeout;

  constructor(
    private readonly bus: Bus,
    private readonly o: ResolvedCoordinatorOptions,
    deps: CoordinatorDeps,
  ) {
    this.log = deps.logger.child({ component: 'coordinator' });
    this.jobs = new JobTracker(bus.vectors);
    this.metrics = coordinatorMetrics(deps.registry ?? new Registry(), () => this.queueDepth());
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
    const advisories = this.bus.nc.subscribe(MAX_DELIVERIES_ADVISORY);
    void this.deadLetters(advisories);
    this.log.info('coordinator started');
    await Promise.all([this.drain(m, (x) => this.onManifest(x)), this.drain(r, (x) => this.onResults(x))]);
    advisories.unsubscribe();
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
        // Unexpected (bus down mid-handling): hand it back for a later try.
        this.log.error({ err, subject: msg.subject }, 'message handling failed: will be redelivered');
        msg.nak(2000);
      }
    }
  }

  private async queueDepth(): Promise<{ pending: number; unacked: number }> {
    let pending = 0;
    let unacked = 0;
    for await (const ci of this.bus.jsm.consumers.list(STREAMS.tasks)) {
      pending += ci.num_pending;
      unacked += ci.num_ack_pending;
    }
    return { pending, unacked };
  }

  async close(): Promise<void> {
    if (this.state === 'running') {
      this.state = 'closing';
      this.log.info('closing');
      for (const c of this.consumers) c.stop();
    }
    return this.closed;
  }

  // ---- manifests -------------------------------------------------------------------------

  private async onManifest(msg: JsMsg): Promise<void> {
    let manifest: DatasetManifest;
    try {
      manifest = codecs.manifest.decode(msg.data, `manifest on ${msg.subject}`);
    } catch (err) {
      this.metrics.malformed.inc({ stream: STREAMS.manifests });
      this.metrics.manifests.inc({ outcome: 'malformed' });
      this.log.error({ err, subject: msg.subject }, 'malformed manifest: dropped');
      msg.term();
      return;
    }
    if (this.jobs.has(manifest.jobId) || this.starting.has(manifest.jobId)) {
      msg.ack(); // our own re-publication of a job in hand (it now carries the splits)
      return;
    }
    const log = this.log.child({ job: manifest.jobId });
    const existing = await this.readStatus(manifest.jobId).catch(() => undefined);
    if (existing && existing.state !== JobState.JOB_STATE_QUEUED) {
      // Redelivery after a restart: carry on from what JetStream holds.
      if (!this.jobs.has(manifest.jobId) && !isTerminal(existing.state)) await this.resume(existing, manifest);
      msg.ack();
      return;
    }
    try {
      validateManifest(manifest);
      const keepAlive = setInterval(() => msg.working(), 10_000);
      this.starting.add(manifest.jobId);
      try {
        await this.startJob(manifest, log);
      } finally {
        clearInterval(keepAlive);
        this.starting.delete(manifest.jobId);
      }
      this.metrics.manifests.inc({ outcome: 'accepted' });
    } catch (err) {
      const reason = err instanceof ManifestError ? err.message : `cannot start: ${(err as Error).message}`;
      log.error({ err }, 'job refused');
      this.metrics.manifests.inc({ outcome: 'refused' });
      const status = existing ?? this.newStatus(manifest);
      status.state = JobState.JOB_STATE_FAILED;
      status.error = reason;
      await this.writeStatus(status);
      await this.event(status.jobId, { state: status.state });
      await this.event(status.jobId, { message: reason });
    }
    msg.ack();
  }

  private newStatus(manifest: DatasetManifest): JobStatus {
    return codecs.jobStatus.create({
      jobId: manifest.jobId,
      name: manifest.name,
      state: JobState.JOB_STATE_QUEUED,
      counts: { total: manifest.images.length, cached: 0, extracted: 0, failed: 0 },
      classes: manifest.classes,
      createdAtMs: Date.now(),
      skipped: manifest.skipped.length,
    });
  }

  private resolveBackbone(manifest: DatasetManifest, log: Logger): Promise<ResolvedBackbone> {
    const ref = manifest.backbone!;
    const spec = parseBackbone(ref.id && ref.id !== 'custom' ? ref.id : ref.url ?? '', {
      bottleneck: ref.bottleneck || undefined,
      inputSize: ref.inputSize || undefined,
      preprocess: ref.preprocess || undefined,
    });
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

  private async startJob(manifest: DatasetManifest, log: Logger): Promise<void> {
    const backbone = await this.resolveBackbone(manifest, log);
    const t = manifest.training;
    for (const img of manifest.images) {
      if (!img.split) {
        const s = assignSplit(img.path, t?.validationPercent || 10, t?.testPercent || 10);
        img.split = s === 'test' ? Split.SPLIT_TEST : s === 'validation' ? Split.SPLIT_VALIDATION : Split.SPLIT_TRAIN;
      }
    }
    // Store the manifest with its splits, so a restarted coordinator sees the same sets.
    await this.bus.js.publish(manifestSubject(manifest.jobId), codecs.manifest.encode(manifest));
    const status = this.newStatus(manifest);
    status.state = JobState.JOB_STATE_EXTRACTING;
    status.backbone = { ...backbone };
    status.warning = backbone.warning ?? '';
    const job = this.jobs.track(manifest, status, backbone, log);
    this.updateJobGauge();
    await this.jobs.scan(job, true);
    const misses = [...job.pending.keys()].sort();
    await this.checkImagesStored(job, misses);
    await this.writeStatus(status);
    await this.event(status.jobId, { state: status.state });
    this.metrics.cacheHits.inc(status.counts!.cached!);
    this.metrics.cacheMisses.inc(misses.length);
    log.info({ images: manifest.images.length, cached: status.counts!.cached, toExtract: misses.length, backbone: backbone.id, fingerprint: backbone.fingerprint }, 'job started');
    if (misses.length) await this.enqueue(job, misses);
    this.checkExtractionDone(job);
  }

  /** Refuses a manifest naming images that were never uploaded: nothing is enqueued for it. */
  private async checkImagesStored(job: ActiveJob, shas: string[]): Promise<void> {
    const missing: string[] = [];
    await inBatches(shas, 64, async (sha) => {
      const info = await this.bus.images.info(sha);
      if (!info || info.deleted) missing.push(...(job.pathsBySha.get(sha) ?? [sha]));
    });
    if (missing.length) {
      this.forget(job);
      throw new ManifestError(missing.sort().map((p) => `${p}: not in the image store (upload it first, e.g. with graft publish)`));
    }
  }

  /** Drops a job from memory (and from the vectors it waits for). */
  private forget(job: ActiveJob): void {
    this.jobs.forget(job);
    this.updateJobGauge();
  }

  /** Counts a result for every job waiting on it; jobs with nothing left move on to training. */
  private resolve(fp: string, sha: string, code: ErrorCode, message: string): void {
    for (const job of this.jobs.resolve(fp, sha, code, message)) this.checkExtractionDone(job);
  }

  private async enqueue(job: ActiveJob, shas: string[]): Promise<void> {
    await ensureExtractorConsumer(this.bus.jsm, job.backbone.fingerprint, { ackWaitMs: this.o.taskAckWaitMs, maxDeliver: this.o.taskMaxDeliver });
    const b = job.backbone;
    const ref = { id: b.id, url: b.url, bottleneck: b.bottleneck, inputSize: b.inputSize, preprocess: b.preprocess, fingerprint: b.fingerprint, dim: b.dim, format: b.format };
    for (let i = 0; i < shas.length; i += this.o.taskSize) {
      const chunk = shas.slice(i, i + this.o.taskSize);
      // Content-derived ids: re-enqueueing after a crash publishes nothing twice.
      const taskId = `${job.manifest.jobId}-${createHash('sha256').update(chunk.join(',')).digest('hex').slice(0, 16)}`;
      const bytes = codecs.task.encode({ jobId: job.manifest.jobId, taskId, backbone: ref, imageSha256: chunk, vectorDtype: job.manifest.vectorDtype });
      await this.publishWithBackpressure(taskSubject(b.fingerprint), bytes, taskId, job.log);
      this.metrics.tasksEnqueued.inc();
    }
    job.log.info({ tasks: Math.ceil(shas.length / this.o.taskSize), images: shas.length }, 'tasks enqueued');
  }

  /** A full task queue refuses new tasks (discard: new): wait for room rather than drop work. */
  private async publishWithBackpressure(subject: string, bytes: Uint8Array, msgID: string, log: Logger): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.bus.js.publish(subject, bytes, { msgID });
        return;
      } catch (err) {
        if (!/maximum (messages|bytes)/i.test((err as Error).message) || this.state !== 'running') throw err;
        if (attempt === 1) log.warn('task queue is full: waiting for workers to make room');
        await sleep(Math.min(5000, 100 * attempt));
      }
    }
  }

  // ---- results ---------------------------------------------------------------------------

  private async onResults(msg: JsMsg): Promise<void> {
    let batch: VectorBatch;
    try {
      batch = codecs.vectorBatch.decode(msg.data, `vector batch on ${msg.subject}`);
    } catch (err) {
      this.metrics.malformed.inc({ stream: STREAMS.results });
      this.log.error({ err, subject: msg.subject }, 'malformed vector batch: dropped');
      msg.term();
      return;
    }
    const fp = batch.backboneFingerprint;
    await Promise.all(
      batch.vectors.map(async (v) => {
        this.metrics.vectors.inc({ kind: v.errorCode ? 'error' : 'vector' });
        if (v.errorCode && !CONTENT_ERRORS.has(v.errorCode)) return; // transient: recorded on the job only
        const entry = codecs.cachedVector.encode({ vector: v.vector, dim: v.dim, dtype: v.dtype, errorCode: v.errorCode, errorMessage: v.errorMessage });
        await this.bus.vectors.put(vectorKey(fp, v.sha256), entry);
        this.metrics.vectorsCached.inc();
      }),
    );
    for (const v of batch.vectors) this.resolve(fp, v.sha256, v.errorCode ?? 0, v.errorMessage ?? '');
    msg.ack();
    this.metrics.lastProgress.setToCurrentTime();
  }

  private checkExtractionDone(job: ActiveJob): void {
    if (job.pending.size > 0 || job.status.state !== JobState.JOB_STATE_EXTRACTING) return;
    job.status.state = JobState.JOB_STATE_TRAINING;
    job.dirty = true;
    const c = job.status.counts!;
    job.log.info({ cached: c.cached, extracted: c.extracted, failed: c.failed }, 'extraction complete');
    this.scheduleTraining(job);
  }

  /**
   * A task delivered MaxDeliver times without an ack (its workers kept dying on it) will not
   * come back: answer its images as failed, so the job ends, and take it off the queue.
   */
  private async deadLetters(sub: Subscription): Promise<void> {
    for await (const m of sub) {
      try {
        const a = JSON.parse(new TextDecoder().decode(m.data)) as { stream_seq: number; deliveries: number; consumer: string };
        const stored = await this.bus.jsm.streams.getMessage(STREAMS.tasks, { seq: a.stream_seq }).catch(() => null);
        if (!stored) continue;
        const task = codecs.task.decode(stored.data, `dead-lettered task ${a.stream_seq}`);
        const reason = `extraction gave up after ${a.deliveries} deliveries without an answer (a worker died on it each time: a poison image?)`;
        this.log.error({ job: task.jobId, task: task.taskId, images: task.imageSha256.length, deliveries: a.deliveries }, 'task dead-lettered');
        this.metrics.vectors.inc({ kind: 'dead_letter' }, task.imageSha256.length);
        for (const sha of task.imageSha256) this.resolve(task.backbone!.fingerprint!, sha, ErrorCode.ERROR_CODE_INTERNAL, reason);
        await this.bus.jsm.streams.deleteMessage(STREAMS.tasks, a.stream_seq, false).catch(() => undefined);
      } catch (err) {
        this.log.error({ err }, 'cannot handle a max-deliveries advisory');
      }
    }
  }

  // ---- training --------------------------------------------------------------------------

  private scheduleTraining(job: ActiveJob): void {
    // One head at a time: training shares this process's single backend thread.
    this.trainingQueue = this.trainingQueue.then(() => this.train(job));
  }

  private async train(job: ActiveJob): Promise<void> {
    if (this.state !== 'running') return;
    const s = job.status;
    s.state = JobState.JOB_STATE_TRAINING;
    await this.writeStatus(s);
    await this.event(s.jobId, { state: s.state });
    try {
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
          await this.writeStatus(s);
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
      job.log.error({ err }, 'training failed');
      s.state = JobState.JOB_STATE_FAILED;
      s.error = `training failed: ${(err as Error).message}`;
    }
    await this.writeStatus(s);
    await this.event(s.jobId, { state: s.state });
    this.forget(job);
  }

  // ---- recovery and records --------------------------------------------------------------

  /** Picks up every unfinished job recorded in the jobs bucket. */
  private async recoverJobs(): Promise<void> {
    const keys = await this.bus.jobs.keys();
    for await (const id of keys) {
      const status = await this.readStatus(id).catch(() => undefined);
      if (!status || isTerminal(status.state) || status.state === JobState.JOB_STATE_QUEUED) continue;
      const stored = await this.bus.jsm.streams.getMessage(STREAMS.manifests, { last_by_subj: manifestSubject(id) }).catch(() => null);
      if (!stored) {
        status.state = JobState.JOB_STATE_FAILED;
        status.error = 'its manifest is no longer in the manifests stream';
        await this.writeStatus(status);
        continue;
      }
      await this.resume(status, codecs.manifest.decode(stored.data, `stored manifest of ${id}`));
    }
  }

  private async resume(status: JobStatus, manifest: DatasetManifest): Promise<void> {
    const log = this.log.child({ job: status.jobId });
    const b = status.backbone!;
    if (!b?.fingerprint) {
      // Crashed before the backbone was resolved: start over.
      await this.startJob(manifest, log);
      return;
    }
    const backbone: ResolvedBackbone = { id: b.id!, url: b.url!, bottleneck: b.bottleneck!, inputSize: b.inputSize!, preprocess: b.preprocess as ResolvedBackbone['preprocess'], fingerprint: b.fingerprint, dim: b.dim!, format: b.format as 'layers' | 'graph' };
    const job = this.jobs.track(manifest, status, backbone, log);
    this.updateJobGauge();
    await this.jobs.scan(job, false);
    log.info({ state: jobStateName(status.state), pending: job.pending.size, counts: status.counts }, 'job resumed');
    if (status.state === JobState.JOB_STATE_EXTRACTING) {
      // Tasks may have been lost only if the manifest was never acknowledged; republishing is deduplicated.
      if (job.pending.size) await this.enqueue(job, [...job.pending.keys()].sort());
      this.checkExtractionDone(job);
    } else this.scheduleTraining(job);
  }

  private async readStatus(jobId: string): Promise<JobStatus | undefined> {
    const e = await this.bus.jobs.get(jobId);
    if (!e || e.length === 0) return undefined;
    return codecs.jobStatus.decode(e.value, `job record ${jobId}`);
  }

  private async writeStatus(s: JobStatus): Promise<void> {
    s.updatedAtMs = Date.now();
    await this.bus.jobs.put(s.jobId, codecs.jobStatus.encode(s));
    const job = this.jobs.get(s.jobId);
    if (job) job.dirty = false;
  }

  private async event(jobId: string, e: Omit<Parameters<typeof codecs.jobEvent.encode>[0], 'jobId' | 'atMs'>): Promise<void> {
    const msg: Partial<JobEvent> = { jobId, atMs: Date.now(), ...e };
    await this.bus.js.publish(eventSubject(jobId), codecs.jobEvent.encode(msg)).catch((err: unknown) => this.log.debug({ err }, 'event not published'));
  }

  private flushing = false;

  /** Writes records of jobs whose counts moved, with a progress event each. */
  private async flush(): Promise<void> {
    if (this.flushing) return;
    this.flushing = true;
    try {
      for (const job of this.jobs.values()) {
        if (!job.dirty) continue;
        await this.writeStatus(job.status);
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
