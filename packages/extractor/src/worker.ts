import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { JsMsg } from '@nats-io/jetstream';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import {
  ErrorCode,
  TASK_CLAIM_TTL_MS,
  ProtocolError,
  codecs,
  deadLetter,
  encodeVector,
  errorCodeName,
  modelObjects,
  resultSubject,
  taskFailureAction,
  type Bus,
  type ExtractionTask,
  type ImageVector,
} from '@graft/protocol';
import { backboneFromFiles, filesFromBundle, isAugmentedId, resolvedFromFields, type Backbone } from '@graft/vision';
import { extractorMetrics, type ExtractorMetrics } from './metrics.js';
import { resolveWorkerOptions, type ResolvedWorkerOptions, type WorkerOptions } from './options.js';
import { failure, fetchAndDecode, type PixelTiming } from './pixels.js';
import { TaskClaims, type ClaimKeeper } from './task-claims.js';
import { TaskSource } from './task-source.js';

export type WorkerState = 'running' | 'closing' | 'closed';

/** A running extractor. Create with {@link startWorker}. */
export interface Worker {
  readonly id: string;
  readonly state: WorkerState;
  /** Totals since start: tasks answered, images embedded or failed, backbone forward passes. */
  readonly stats: Readonly<{ tasks: number; images: number; failed: number; backboneCalls: number }>;
  /** Resolves when the worker has stopped. */
  readonly closed: Promise<void>;
  /**
   * Stops pulling, lets the task in hand finish (up to graceMs), hands back what it
   * has not started (nak, so it is redelivered at once), then resolves. Idempotent.
   * The caller closes the bus afterwards.
   */
  close(): Promise<void>;
}

export interface WorkerDeps {
  logger: Logger;
  registry?: Registry;
  /** Backend in use, for the graft_worker_info metric. */
  backend?: string;
}

/** A task pulled and decoded ahead of inference. */
interface Prepared {
  msg: JsMsg;
  task: ExtractionTask;
  /** Per image: pixels, or the error that ends it. */
  pixels: Promise<(Uint8Array | ImageVector)[]>;
  /** Filled in as the stages finish. */
  timing: PixelTiming;
  /** Set once the task's claim is this worker's: renewed while held, released when handed back. */
  owned: boolean;
  claimKeeper?: ClaimKeeper;
  keepAlive: NodeJS.Timeout;
}

/** Tasks being pulled, fetched and decoded while one is in the backbone (short tasks). */
const PREFETCH_TASKS = 2;
/** Task results kept for a redelivery; each a few KB to a few hundred KB. */
const MAX_ANSWERS = 32;
/** Backbones kept in memory at once; each can be hundreds of MB. */
const MAX_LOADED_BACKBONES = 2;
/** After the grace period, how long close() still waits for the loop to end, ms. */
const CLOSE_AFTER_GRACE_MS = 2000;
/** Tasks longer than this (seconds of inference) are prefetched one at a time. */
const LONG_TASK_SECONDS = 2;

class ExtractorWorker implements Worker {
  state: WorkerState = 'running';
  readonly stats = { tasks: 0, images: 0, failed: 0, backboneCalls: 0 };
  readonly closed: Promise<void>;
  private readonly metrics: ExtractorMetrics;
  private readonly log: Logger;
  private readonly backbones = new Map<string, Promise<Backbone>>();
  private readonly source: TaskSource;
  private readonly claims: TaskClaims;
  /** Measured backbone seconds per image, per fingerprint: sizes chunks to fit the lease. */
  private readonly secondsPerImage = new Map<string, number>();
  private readonly jobLogs = new Map<string, Logger>();
  /** Inference seconds of the last task: decides how far ahead to prefetch. */
  private lastTaskSeconds = 0;
  private inHand?: Prepared;
  /**
   * Encoded results of the last tasks this worker embedded, by task id (the oldest dropped past
   * MAX_ANSWERS): a task that comes back (its ack lost when the broker went away) is answered
   * again from here, deduplicated by its message id, instead of running the backbone twice.
   */
  private readonly answers = new Map<string, Uint8Array>();
  private readonly backendName: string;

  constructor(
    private readonly bus: Bus,
    private readonly o: ResolvedWorkerOptions,
    deps: WorkerDeps,
  ) {
    this.id = o.workerId;
    this.log = deps.logger.child({ component: 'extractor', worker: o.workerId });
    this.metrics = extractorMetrics(deps.registry ?? new Registry());
    this.backendName = deps.backend ?? 'unknown';
    this.source = new TaskSource(bus, { pullExpiresMs: o.pullExpiresMs, idleWaitMs: o.idleWaitMs, maxDeliver: o.maxDeliver }, this.log);
    this.claims = new TaskClaims(bus, o.workerId, this.log);
    this.closed = this.loop().finally(() => {
      for (const b of this.backbones.values()) void b.then((x) => x.dispose(), () => undefined);
      this.backbones.clear();
      this.state = 'closed';
      this.log.info(this.stats, 'worker stopped');
    });
  }

  readonly id: string;

  async close(): Promise<void> {
    if (this.state === 'running') {
      this.state = 'closing';
      this.log.info({ graceMs: this.o.graceMs }, 'closing: no new tasks; finishing the one in hand');
      this.source.close();
      let giveUp: () => void = () => undefined;
      const gaveUp = new Promise<void>((resolve) => (giveUp = resolve));
      const grace = setTimeout(() => {
        if (this.inHand) {
          this.log.warn({ task: this.inHand.task.taskId }, 'grace period over: handing the task back');
          this.handBack(this.inHand);
        }
        // A task stuck on a bus that is gone (fetch or publish waiting for the broker) must not
        // keep the process alive: its lease runs out and it is redelivered.
        setTimeout(giveUp, CLOSE_AFTER_GRACE_MS).unref();
      }, this.o.graceMs);
      await Promise.race([this.closed, gaveUp]);
      clearTimeout(grace);
      if ((this.state as WorkerState) !== 'closed') this.log.warn('closed with a task still waiting for the broker; it will be redelivered');
      return;
    }
    return this.closed;
  }

  private async loop(): Promise<void> {
    this.log.info({ options: { ...this.o, workerId: undefined }, decodeThreads: Number(process.env.UV_THREADPOOL_SIZE ?? 4) }, 'worker started');
    // Pipeline: the next tasks' pulls, fetches and decodes (sharp's thread pool) overlap this
    // task's inference. Inference holds the event loop, so each of their round trips waits for
    // a gap between backbone calls: keeping two tasks in preparation hides those waits.
    const ahead: Promise<Prepared | null>[] = [this.pull()];
    while (this.state === 'running') {
      const cur = await ahead.shift()!;
      if (this.state !== 'running') {
        if (cur) this.handBack(cur);
        break;
      }
      // Short tasks: keep two in preparation. Long ones: one is enough, and holding more would
      // leave other workers idle at the end of a job while this one works through its hoard.
      const depth = this.lastTaskSeconds > LONG_TASK_SECONDS ? 1 : PREFETCH_TASKS;
      while (ahead.length < depth) ahead.push(this.pull());
      if (cur) await this.process(cur);
    }
    // Pulls still in flight end by themselves, unless the broker is gone: then wait no longer than
    // the grace period (tasks not handed back are redelivered after AckWait).
    let timer: NodeJS.Timeout | undefined;
    const settled = await Promise.race([Promise.all(ahead), new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), this.o.graceMs)))]);
    clearTimeout(timer);
    for (const left of settled ?? []) if (left) this.handBack(left);
  }

  private handBack(p: Prepared): void {
    clearInterval(p.keepAlive);
    p.msg.nak();
    this.releaseClaim(p);
    this.log.info({ task: p.task.taskId }, 'task handed back for redelivery');
    this.metrics.inFlight.dec();
    if (this.inHand === p) this.inHand = undefined;
  }

  /** The next task, pulled and its pixels in preparation, or null after an idle wait. */
  private async pull(): Promise<Prepared | null> {
    if (this.state !== 'running') return null;
    const msg = await this.source.next(new Set(this.backbones.keys()));
    return msg ? this.prepare(msg) : null;
  }

  private prepare(msg: JsMsg): Prepared | null {
    let task: ExtractionTask;
    try {
      task = codecs.task.decode(msg.data, `task on ${msg.subject}`);
      if (!task.backbone?.fingerprint || !task.backbone.inputSize || !task.jobId) throw new ProtocolError(`task on ${msg.subject} has no resolved backbone or job id`);
    } catch (err) {
      // A malformed task can never succeed: terminate it rather than redeliver it forever.
      this.log.error({ err, subject: msg.subject }, 'malformed task: terminated');
      this.metrics.tasks.inc({ outcome: 'malformed' });
      void deadLetter(this.bus, 'task', msg.data, msg.subject, (err as Error).message);
      msg.term();
      return null;
    }
    this.metrics.inFlight.inc();
    const keepAlive = this.source.keepLease(msg);
    const timing: PixelTiming = { fetchSeconds: 0, decodeSeconds: 0, fetchedBytes: 0 };
    // Fetches and decodes (sharp's thread pool) overlap the previous task's inference, which holds the main thread.
    const pixels = this.answers.has(task.taskId)
      ? Promise.resolve([]) // answered already: nothing to fetch
      : fetchAndDecode(this.bus, task.imageSha256, { size: task.backbone.inputSize, limits: this.o.limits, decodeTimeoutMs: this.o.taskTimeoutMs }, timing);
    pixels.catch(() => undefined); // handled in process(); never an unhandled rejection meanwhile
    return { msg, task, pixels, timing, keepAlive, owned: false };
  }

  /**
   * Images per backbone call: inference holds the event loop, so the lease can only be
   * renewed between calls; each call must take well under AckWait.
   */
  private chunkSize(msg: JsMsg, fingerprint: string): number {
    const spi = this.secondsPerImage.get(fingerprint);
    if (!spi) return 1; // first call: measure
    return Math.max(1, Math.min(this.o.inferBatchSize, Math.floor((this.source.ackWaitMs(msg) / 1000) * 0.4 / spi)));
  }

  private jobLog(jobId: string): Logger {
    let l = this.jobLogs.get(jobId);
    if (!l) {
      if (this.jobLogs.size > 100) this.jobLogs.clear();
      l = this.log.child({ job: jobId });
      this.jobLogs.set(jobId, l);
    }
    return l;
  }

  /**
   * The task's backbone, loaded on first use. At most MAX_LOADED_BACKBONES stay in memory:
   * the least recently used one is disposed when another is loaded.
   */
  private backbone(task: ExtractionTask): Promise<Backbone> {
    const fp = task.backbone!.fingerprint!;
    let b = this.backbones.get(fp);
    if (b) {
      this.backbones.delete(fp); // Map order = use order
      this.backbones.set(fp, b);
      return b;
    }
    b = this.loadFromModelStore(task);
    this.backbones.set(fp, b);
    b.then(
      (x) => {
        this.log.info({ backbone: x.info.id, fingerprint: x.info.fingerprint, dim: x.info.dim }, 'backbone loaded');
        this.metrics.info.set({ backend: this.backendName, backbone: x.info.id }, 1);
      },
      () => this.backbones.delete(fp),
    );
    while (this.backbones.size > MAX_LOADED_BACKBONES) {
      const [oldFp, old] = this.backbones.entries().next().value!;
      this.backbones.delete(oldFp);
      // Only one task is inferred at a time, and it is not this one: nothing uses the old model now.
      void old.then((x) => {
        x.dispose();
        this.metrics.info.remove({ backend: this.backendName, backbone: x.info.id });
        this.log.info({ fingerprint: oldFp }, 'backbone unloaded (least recently used)');
      }, () => undefined);
    }
    return b;
  }

  /**
   * A task's backbone from the model store, where the coordinator put it when it resolved it:
   * workers never load what a manifest names (no URLs, no local paths), only this, checked
   * against the task's fingerprint.
   */
  private async loadFromModelStore(task: ExtractionTask): Promise<Backbone> {
    const spec = resolvedFromFields(task.backbone!);
    const [json, weights] = await Promise.all([this.bus.models.getBlob(modelObjects.json(spec.fingerprint)), this.bus.models.getBlob(modelObjects.weights(spec.fingerprint))]);
    if (!json || !weights) throw new Error(`backbone ${spec.fingerprint} is not in the model store (the coordinator puts it there when it starts a job)`);
    return backboneFromFiles({ spec, files: filesFromBundle(json, weights, `model store ${spec.fingerprint}`) });
  }

  private async process(p: Prepared): Promise<void> {
    this.inHand = p;
    const { msg, task } = p;
    const log = this.jobLog(task.jobId);
    const t0 = performance.now();
    try {
      const answered = this.answers.get(task.taskId);
      if (answered) {
        await this.publishBatch(task, answered);
        await msg.ackAck();
        this.metrics.tasks.inc({ outcome: 'resent' });
        log.info({ task: task.taskId, delivery: msg.info.deliveryCount }, 'task came back: answered again without the backbone');
        return;
      }
      // Pixels first: their fetch and decode started with the pull, and its timeout counts from there.
      let deadline = t0 + this.o.taskTimeoutMs;
      const items = await withDeadline(p.pixels, deadline, `fetching and decoding took over ${this.o.taskTimeoutMs} ms`);
      // Claimed only now, just before the backbone: prefetched tasks hold no claim, so a worker that
      // dies leaves at most one. Waiting on another's claim is not this task's time.
      const ackWait = this.source.ackWaitMs(msg);
      const tClaim = performance.now();
      const claim = await this.claims.claim(task, msg, () => this.state === 'running', ackWait, this.o.taskTimeoutMs + TASK_CLAIM_TTL_MS);
      deadline += performance.now() - tClaim;
      if (claim === 'answered') {
        // Answered by another worker whose ack was lost: running the backbone again would only repeat it.
        await msg.ackAck();
        this.metrics.tasks.inc({ outcome: 'cached' });
        log.info({ task: task.taskId, delivery: msg.info.deliveryCount }, 'task came back already answered (its vectors cached, or on their way from the worker that claimed it)');
        return;
      }
      if (claim === 'hand-back') {
        this.handBack(p);
        return;
      }
      if (claim === 'claimed') {
        p.owned = true;
        p.claimKeeper = this.claims.keep(task.taskId, ackWait);
      }
      const { fetchSeconds, decodeSeconds, fetchedBytes } = p.timing;
      this.metrics.bytesFetched.inc(fetchedBytes);
      const tLoad = performance.now();
      const backbone = await this.backbone(task);
      const tInfer = performance.now();
      deadline += tInfer - tLoad; // loading a model is a one-time cost, not the task's
      const ok = items.map((x, i) => [x, i] as const).filter((e): e is readonly [Uint8Array, number] => e[0] instanceof Uint8Array);
      const out: ImageVector[] = items.map((x) => (x instanceof Uint8Array ? ({} as ImageVector) : x));
      const fp = backbone.info.fingerprint;
      for (let i = 0; i < ok.length; ) {
        if (performance.now() > deadline) {
          // Inference holds the thread, so the deadline is checked between backbone calls.
          for (const [, idx] of ok.slice(i)) out[idx] = failure(task.imageSha256[idx], ErrorCode.ERROR_CODE_TIMEOUT, `the task ran past its ${this.o.taskTimeoutMs} ms limit`);
          break;
        }
        const chunk = ok.slice(i, i + this.chunkSize(msg, fp));
        i += chunk.length;
        const tc = performance.now();
        const vectors = await backbone.embed(chunk.map((c) => c[0]));
        const spi = (performance.now() - tc) / 1000 / chunk.length;
        this.secondsPerImage.set(fp, 0.7 * (this.secondsPerImage.get(fp) ?? spi) + 0.3 * spi);
        this.metrics.backboneCalls.inc();
        this.stats.backboneCalls++;
        msg.working(); // inference blocks the event loop; renew the lease between chunks
        chunk.forEach(([, idx], k) => {
          out[idx] = { sha256: task.imageSha256[idx], vector: encodeVector(vectors[k], task.vectorDtype), dim: vectors[k].length, dtype: task.vectorDtype };
        });
      }
      const inferSeconds = (performance.now() - tInfer) / 1000;
      this.lastTaskSeconds = inferSeconds;
      const failed = out.filter((v) => v.errorCode).length;
      // Embedded: counted once, whatever happens to the answer; augmented copies apart from photos.
      const copies = out.filter((v) => !v.errorCode && isAugmentedId(v.sha256 ?? '')).length;
      this.metrics.images.inc(out.length - failed - copies);
      this.metrics.augmented.inc(copies);
      this.stats.images += out.length - failed;
      const batch = this.encodeBatch(task, out, { fetchSeconds, decodeSeconds, inferSeconds, publishSeconds: 0 }, msg.info.streamSequence);
      this.keepAnswer(task.taskId, batch);
      if (this.state === 'closed' || this.inHand !== p) return; // handed back during inference
      const tPub = performance.now();
      // A broker failing over answers nothing for a moment: keep the task (and its lease) until the
      // answer is out, however long that takes, rather than hand it to another worker that would
      // embed it again. Only closing gives it up.
      await this.holdOn(msg, () => this.publishBatch(task, batch, 2000), Infinity);
      const publishSeconds = (performance.now() - tPub) / 1000;
      // The answer is out: say so on the claim (the last word on it: renewals stopped first), and ack.
      // An ack that does not get through is no reason to hand the task back: if the task comes back,
      // this worker answers it from memory, another finds the claim answered.
      await p.claimKeeper?.stop();
      await Promise.all([
        p.owned && this.holdOn(msg, () => this.claims.answeredBy(task.taskId), ackWait * 0.8).catch((err) => log.warn({ err, task: task.taskId }, 'cannot mark the claim answered')),
        this.holdOn(msg, () => msg.ackAck(), ackWait * 0.8).catch((err) =>
          log.warn({ err, task: task.taskId }, 'answer published but the ack did not get through; the task may come back, already answered'),
        ),
      ]);
      this.stats.tasks++;
      this.stats.failed += failed;
      for (const v of out) if (v.errorCode) this.metrics.failed.inc({ reason: errorCodeName(v.errorCode) });
      this.metrics.tasks.inc({ outcome: 'ok' });
      this.metrics.batchSize.observe(out.length);
      this.metrics.stage.observe({ stage: 'fetch' }, fetchSeconds);
      this.metrics.stage.observe({ stage: 'decode' }, decodeSeconds);
      this.metrics.stage.observe({ stage: 'infer' }, inferSeconds);
      this.metrics.stage.observe({ stage: 'publish' }, publishSeconds);
      this.metrics.lastProgress.setToCurrentTime();
      log.debug({ task: task.taskId, images: out.length, failed, decodeSeconds, inferSeconds, publishSeconds }, 'task done');
    } catch (err) {
      await this.fail(p, err, log);
    } finally {
      clearInterval(p.keepAlive);
      void p.claimKeeper?.stop();
      if (this.inHand === p) {
        this.inHand = undefined;
        this.metrics.inFlight.dec();
      }
      log.trace({ seconds: (performance.now() - t0) / 1000 }, 'task processed');
    }
  }

  /**
   * Gives up a task's claim, if it is this worker's: renewals stop first, so none in flight can put
   * the claim back after it is released.
   */
  private releaseClaim(p: Prepared): void {
    if (!p.owned) return;
    p.owned = false;
    void (p.claimKeeper?.stop() ?? Promise.resolve()).then(() => this.claims.release(p.task.taskId));
  }

  /**
   * Runs op, trying again (its lease renewed) for up to forMs while the bus does not answer and
   * the worker is running: a JetStream cluster electing a new stream leader takes a few seconds.
   */
  private async holdOn<T>(msg: JsMsg, op: () => Promise<T>, forMs: number): Promise<T> {
    const until = performance.now() + forMs;
    for (;;) {
      try {
        return await op();
      } catch (err) {
        if (performance.now() > until || this.state !== 'running') throw err;
        msg.working();
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  private keepAnswer(taskId: string, batch: Uint8Array): void {
    this.answers.set(taskId, batch);
    while (this.answers.size > MAX_ANSWERS) this.answers.delete(this.answers.keys().next().value!);
  }

  private async publish(task: ExtractionTask, vectors: ImageVector[], timings: { fetchSeconds: number; decodeSeconds: number; inferSeconds: number; publishSeconds: number }): Promise<void> {
    await this.publishBatch(task, this.encodeBatch(task, vectors, timings));
  }

  private encodeBatch(task: ExtractionTask, vectors: ImageVector[], timings: { fetchSeconds: number; decodeSeconds: number; inferSeconds: number; publishSeconds: number }, taskSeq = 0): Uint8Array {
    return codecs.vectorBatch.encode({
      jobId: task.jobId,
      taskId: task.taskId,
      taskSeq,
      backboneFingerprint: task.backbone!.fingerprint,
      workerId: this.id,
      vectors,
      timings,
    });
  }

  private async publishBatch(task: ExtractionTask, batch: Uint8Array, timeoutMs = 10_000): Promise<void> {
    // The message id makes a retry after a crash between publish and ack a no-op.
    await this.bus.js.publish(resultSubject(task.jobId), batch, { msgID: `${task.taskId}`, timeout: timeoutMs });
  }

  /** A task that failed as a whole: retry it later, or after its last delivery answer every image with the error. */
  private async fail(p: Prepared, err: unknown, log: Logger): Promise<void> {
    const { msg, task } = p;
    const message = (err as Error).message ?? String(err);
    const action = taskFailureAction(msg.info.deliveryCount, this.source.maxDeliver(msg));
    if (action.retry) {
      log.warn({ err, task: task.taskId, delivery: msg.info.deliveryCount, retryInMs: action.delayMs }, 'task failed: will be retried');
      this.metrics.tasks.inc({ outcome: 'retried' });
      msg.nak(action.delayMs);
      this.releaseClaim(p);
      return;
    }
    log.error({ err, task: task.taskId, delivery: msg.info.deliveryCount }, 'task failed on its last delivery: reporting its images as failed');
    try {
      const out = task.imageSha256.map((sha) => failure(sha, ErrorCode.ERROR_CODE_INTERNAL, `extraction failed after ${msg.info.deliveryCount} attempts: ${message}`));
      await this.publish(task, out, { fetchSeconds: 0, decodeSeconds: 0, inferSeconds: 0, publishSeconds: 0 });
      msg.ack();
      this.metrics.tasks.inc({ outcome: 'failed' });
      this.metrics.failed.inc({ reason: 'internal' }, out.length);
      this.stats.failed += out.length;
    } catch (err2) {
      log.error({ err: err2, task: task.taskId }, 'cannot report the failed task; it will be redelivered');
      msg.nak(5000);
    }
  }
}

/** p, or a rejection once performance.now() passes the deadline. */
function withDeadline<T>(p: Promise<T>, deadline: number, message: string): Promise<T> {
  let t: NodeJS.Timeout;
  const late = new Promise<T>((_, reject) => (t = setTimeout(() => reject(new Error(message)), Math.max(0, deadline - performance.now()))));
  return Promise.race([p, late]).finally(() => clearTimeout(t));
}

/**
 * Starts an extractor on a bus: it serves every backbone with queued tasks, loading
 * each one on first use. Returns once the pull loop runs.
 * @throws RangeError for bad options.
 */
export async function startWorker(bus: Bus, options: WorkerOptions, deps: WorkerDeps): Promise<Worker> {
  const o = resolveWorkerOptions(options, `${hostname()}-${process.pid}`, deps.backend);
  return new ExtractorWorker(bus, o, deps);
}
