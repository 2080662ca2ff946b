import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { Consumer, JsMsg } from '@nats-io/jetstream';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import {
  ErrorCode,
  ProtocolError,
  STREAMS,
  codecs,
  encodeVector,
  readImage,
  fingerprintOfConsumer,
  resultSubject,
  type BackboneRefMessage,
  type Bus,
  type ExtractionTask,
  type ImageVector,
} from '@graft/protocol';
import { ImageError, decodeImage, loadBackbone, type Backbone, type Preprocess } from '@graft/vision';
import { extractorMetrics, type ExtractorMetrics } from './metrics.js';
import { resolveWorkerOptions, type ResolvedWorkerOptions, type WorkerOptions } from './options.js';

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
  timing: { fetchSeconds: number; decodeSeconds: number };
  keepAlive: NodeJS.Timeout;
}

/** Decides, in one place, what a failure means for a task: answer it with errors now, or retry it later. */
function isFinal(msg: JsMsg, maxDeliver: number): boolean {
  return msg.info.deliveryCount >= maxDeliver;
}

/** Tasks being pulled, fetched and decoded while one is in the backbone (short tasks). */
const PREFETCH_TASKS = 2;
/** Tasks longer than this (seconds of inference) are prefetched one at a time. */
const LONG_TASK_SECONDS = 2;

const IMAGE_ERROR_CODES: Record<ImageError['code'], ErrorCode> = {
  EMPTY: ErrorCode.ERROR_CODE_EMPTY,
  DECODE_FAILED: ErrorCode.ERROR_CODE_DECODE_FAILED,
  TOO_LARGE: ErrorCode.ERROR_CODE_TOO_LARGE,
};

class ExtractorWorker implements Worker {
  state: WorkerState = 'running';
  readonly stats = { tasks: 0, images: 0, failed: 0, backboneCalls: 0 };
  readonly closed: Promise<void>;
  private readonly metrics: ExtractorMetrics;
  private readonly log: Logger;
  private readonly backbones = new Map<string, Promise<Backbone>>();
  /** AckWait of each extractor consumer, ms: leases are renewed well inside it. */
  private readonly ackWaits = new Map<string, number>();
  /** MaxDeliver of each extractor consumer: the last delivery answers with errors. */
  private readonly maxDelivers = new Map<string, number>();
  /** Measured backbone seconds per image, per fingerprint: sizes chunks to fit the lease. */
  private readonly secondsPerImage = new Map<string, number>();
  private readonly jobLogs = new Map<string, Logger>();
  /** Ends every idle wait at once (on close). */
  private readonly wakers = new Set<() => void>();
  /** Inference seconds of the last task: decides how far ahead to prefetch. */
  private lastTaskSeconds = 0;
  /** The queue the last pull got a task from. */
  private lastConsumer?: Consumer;
  private inHand?: Prepared;
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
      for (const w of [...this.wakers]) w();
      const grace = setTimeout(() => {
        if (this.inHand) {
          this.log.warn({ task: this.inHand.task.taskId }, 'grace period over: handing the task back');
          this.handBack(this.inHand);
        }
      }, this.o.graceMs);
      await this.closed;
      clearTimeout(grace);
    }
    return this.closed;
  }

  private async loop(): Promise<void> {
    this.log.info({ options: { ...this.o, workerId: undefined } }, 'worker started');
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
    for (const left of await Promise.all(ahead)) if (left) this.handBack(left);
  }

  private handBack(p: Prepared): void {
    clearInterval(p.keepAlive);
    p.msg.nak();
    this.log.info({ task: p.task.taskId }, 'task handed back for redelivery');
    this.metrics.inFlight.dec();
    if (this.inHand === p) this.inHand = undefined;
  }

  /** One task from the queue with pending work (the loaded backbone's first), or null after an idle wait. */
  private async pull(): Promise<Prepared | null> {
    if (this.state !== 'running') return null;
    let msg: JsMsg | null = null;
    try {
      // While a queue keeps giving tasks, pull from it again without listing consumers.
      let consumer = this.lastConsumer;
      if (!consumer) {
        const name = await this.pickConsumer();
        if (name) consumer = await this.bus.js.consumers.get(STREAMS.tasks, name);
      }
      if (consumer) msg = await consumer.next({ expires: this.o.pullExpiresMs });
      this.lastConsumer = msg ? consumer : undefined;
    } catch (err) {
      this.lastConsumer = undefined;
      this.log.debug({ err }, 'pull failed (broker unavailable?)');
    }
    if (!msg) {
      await this.idle();
      return null;
    }
    return this.prepare(msg);
  }

  private async pickConsumer(): Promise<string | undefined> {
    const loaded = new Set(this.backbones.keys());
    let pick: string | undefined;
    for await (const ci of this.bus.jsm.consumers.list(STREAMS.tasks)) {
      const fp = fingerprintOfConsumer(ci.name);
      if (!fp) continue;
      this.ackWaits.set(ci.name, Math.max(100, Math.floor((ci.config.ack_wait ?? 30e9) / 1e6)));
      if ((ci.config.max_deliver ?? 0) > 0) this.maxDelivers.set(ci.name, ci.config.max_deliver!);
      // Unacknowledged tasks count too: a task whose worker died is redelivered only to a
      // pull that is waiting, so someone must keep pulling until they are acked.
      if (ci.num_pending === 0 && ci.num_ack_pending === 0) continue;
      if (loaded.has(fp)) return ci.name;
      pick ??= ci.name;
    }
    return pick;
  }

  private idle(): Promise<void> {
    if (this.state !== 'running') return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.wakers.delete(done);
        resolve();
      };
      const t = setTimeout(done, this.o.idleWaitMs);
      this.wakers.add(done);
    });
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
      msg.term();
      return null;
    }
    this.metrics.inFlight.inc();
    const keepAlive = setInterval(() => msg.working(), this.leaseRenewMs(msg));
    const size = task.backbone.inputSize;
    const timing = { fetchSeconds: 0, decodeSeconds: 0 };
    // Fetch every image, then decode them all on sharp's thread pool; both overlap the
    // previous task's inference, which holds the main thread.
    const pixels = (async (): Promise<(Uint8Array | ImageVector)[]> => {
      const t0 = performance.now();
      const blobs = await Promise.all(
        task.imageSha256.map(async (sha) => {
          try {
            return await readImage(this.bus, sha);
          } catch (err) {
            throw new Error(`cannot fetch image ${sha}: ${(err as Error).message}`, { cause: err });
          }
        }),
      );
      const t1 = performance.now();
      timing.fetchSeconds = (t1 - t0) / 1000;
      const out = await Promise.all(
        blobs.map(async (bytes, i): Promise<Uint8Array | ImageVector> => {
          const sha = task.imageSha256[i];
          if (!bytes) return failure(sha, ErrorCode.ERROR_CODE_MISSING, 'image is not in the image store');
          try {
            return await withTimeout(decodeImage(bytes, size, this.o.limits), this.o.taskTimeoutMs, `decoding took over ${this.o.taskTimeoutMs} ms`);
          } catch (err) {
            if (err instanceof ImageError) return failure(sha, IMAGE_ERROR_CODES[err.code], err.message);
            if (err instanceof TimeoutError) return failure(sha, ErrorCode.ERROR_CODE_TIMEOUT, err.message);
            return failure(sha, ErrorCode.ERROR_CODE_DECODE_FAILED, (err as Error).message);
          }
        }),
      );
      timing.decodeSeconds = (performance.now() - t1) / 1000;
      return out;
    })();
    pixels.catch(() => undefined); // handled in process(); never an unhandled rejection meanwhile
    return { msg, task, pixels, timing, keepAlive };
  }

  private ackWaitMs(msg: JsMsg): number {
    return this.ackWaits.get(msg.info.consumer) ?? 30_000;
  }

  /** Renew a lease three times per AckWait, so one late timer never loses it. */
  private leaseRenewMs(msg: JsMsg): number {
    return Math.max(50, Math.floor(this.ackWaitMs(msg) / 3));
  }

  /**
   * Images per backbone call: inference holds the event loop, so the lease can only be
   * renewed between calls; each call must take well under AckWait.
   */
  private chunkSize(msg: JsMsg, fingerprint: string): number {
    const spi = this.secondsPerImage.get(fingerprint);
    if (!spi) return 1; // first call: measure
    return Math.max(1, Math.min(this.o.inferBatchSize, Math.floor((this.ackWaitMs(msg) / 1000) * 0.4 / spi)));
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

  private backbone(task: ExtractionTask): Promise<Backbone> {
    const ref = task.backbone as BackboneRefMessage;
    let b = this.backbones.get(ref.fingerprint);
    if (!b) {
      b = loadBackbone(
        { id: ref.id, url: ref.url, bottleneck: ref.bottleneck, inputSize: ref.inputSize, preprocess: ref.preprocess as Preprocess },
        { expectFingerprint: ref.fingerprint, cacheDir: this.o.cacheDir },
      );
      this.backbones.set(ref.fingerprint, b);
      b.then(
        (x) => {
          this.log.info({ backbone: x.info.id, fingerprint: x.info.fingerprint, dim: x.info.dim }, 'backbone loaded');
          this.metrics.info.set({ backend: this.backendName, backbone: x.info.id }, 1);
        },
        () => this.backbones.delete(ref.fingerprint),
      );
    }
    return b;
  }

  private async process(p: Prepared): Promise<void> {
    this.inHand = p;
    const { msg, task } = p;
    const log = this.jobLog(task.jobId);
    const t0 = performance.now();
    try {
      const items = await p.pixels;
      const { fetchSeconds, decodeSeconds } = p.timing;
      const backbone = await this.backbone(task);
      const tInfer = performance.now();
      const ok = items.map((x, i) => [x, i] as const).filter((e): e is readonly [Uint8Array, number] => e[0] instanceof Uint8Array);
      const out: ImageVector[] = items.map((x) => (x instanceof Uint8Array ? ({} as ImageVector) : x));
      const fp = backbone.info.fingerprint;
      for (let i = 0; i < ok.length; ) {
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
      if (this.state === 'closed' || this.inHand !== p) return; // handed back during inference
      const tPub = performance.now();
      await this.publish(task, out, { fetchSeconds, decodeSeconds, inferSeconds, publishSeconds: 0 });
      const publishSeconds = (performance.now() - tPub) / 1000;
      await msg.ackAck().catch(() => msg.ack());
      const failed = out.filter((v) => v.errorCode).length;
      this.stats.tasks++;
      this.stats.images += out.length - failed;
      this.stats.failed += failed;
      this.metrics.images.inc(out.length - failed);
      for (const v of out) if (v.errorCode) this.metrics.failed.inc({ reason: ErrorCode[v.errorCode!].replace('ERROR_CODE_', '').toLowerCase() });
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
      if (this.inHand === p) {
        this.inHand = undefined;
        this.metrics.inFlight.dec();
      }
      log.trace({ seconds: (performance.now() - t0) / 1000 }, 'task processed');
    }
  }

  private async publish(task: ExtractionTask, vectors: ImageVector[], timings: { fetchSeconds: number; decodeSeconds: number; inferSeconds: number; publishSeconds: number }): Promise<void> {
    const batch = codecs.vectorBatch.encode({
      jobId: task.jobId,
      taskId: task.taskId,
      backboneFingerprint: task.backbone!.fingerprint,
      workerId: this.id,
      vectors,
      timings,
    });
    // The message id makes a retry after a crash between publish and ack a no-op.
    await this.bus.js.publish(resultSubject(task.jobId), batch, { msgID: `${task.taskId}`, timeout: 10_000 });
  }

  /** A task that failed as a whole: retry it later, or after its last delivery answer every image with the error. */
  private async fail(p: Prepared, err: unknown, log: Logger): Promise<void> {
    const { msg, task } = p;
    const message = (err as Error).message ?? String(err);
    if (!isFinal(msg, this.maxDelivers.get(msg.info.consumer) ?? this.o.maxDeliver)) {
      const delayMs = Math.min(30_000, 1000 * 2 ** (msg.info.deliveryCount - 1));
      log.warn({ err, task: task.taskId, delivery: msg.info.deliveryCount, retryInMs: delayMs }, 'task failed: will be retried');
      this.metrics.tasks.inc({ outcome: 'retried' });
      msg.nak(delayMs);
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

function failure(sha256: string, code: ErrorCode, message: string): ImageVector {
  return { sha256, errorCode: code, errorMessage: message };
}

class TimeoutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TimeoutError';
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([p, new Promise<T>((_, reject) => (t = setTimeout(() => reject(new TimeoutError(message)), ms)))]).finally(() => clearTimeout(t));
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
