import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import { TASK_CLAIM_TTL_MS, ProtocolError, UNREPORTED_FAILURE_DELAY_MS, WORKER_RETRY_MS, codecs, deadLetter, taskFailureAction } from '@graft/protocol';
import type { Bus, ExtractionTask, ImageVector, JsMsg } from '@graft/protocol';
import { RESIZE_METHOD, runtimeLabel, type Backbone } from '@graft/vision';
import { Answers, withDeadline, type TaskTimings } from './answers.js';
import { BackboneCache } from './backbone-cache.js';
import { Inference } from './inference.js';
import { countDone, countEmbedded, countFetched, extractorMetrics, type ExtractorMetrics } from './metrics.js';
import { resolveWorkerOptions, type ResolvedWorkerOptions, type WorkerOptions } from './options.js';
import { fetchAndDecode, newPixelTiming } from './pixels.js';
import { PreparedWrites } from './prepared-writes.js';
import { TaskClaims } from './task-claims.js';
import { TaskSource } from './task-source.js';
import type { Prepared, Worker, WorkerDeps, WorkerState } from './worker-types.js';

export type { Worker, WorkerDeps, WorkerState } from './worker-types.js';

/** Tasks being pulled, fetched and decoded while one is in the backbone (short tasks). */
const PREFETCH_TASKS = 2;
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
  private readonly backbones: BackboneCache;
  private readonly source: TaskSource;
  private readonly claims: TaskClaims;
  /** Backbone calls sized to fit the lease. */
  private readonly inference = new Inference();
  private readonly jobLogs = new Map<string, Logger>();
  /** Inference seconds of the last task: decides how far ahead to prefetch. */
  private lastTaskSeconds = 0;
  private inHand?: Prepared;
  /** The last answer being published and acked, after the ones before it. */
  private finishing: Promise<void> = Promise.resolve();
  /** This worker's recent answers: a task that comes back is answered again from here, not the backbone. */
  private readonly answers: Answers;
  private readonly prepared?: PreparedWrites; // undefined with --no-prepared-inputs

  constructor(
    private readonly bus: Bus,
    private readonly o: ResolvedWorkerOptions,
    deps: WorkerDeps,
  ) {
    this.id = o.workerId;
    this.log = deps.logger.child({ component: 'extractor', worker: o.workerId });
    this.metrics = extractorMetrics(deps.registry ?? new Registry());
    this.source = new TaskSource(bus, { pullExpiresMs: o.pullExpiresMs, idleWaitMs: o.idleWaitMs, maxDeliver: o.maxDeliver }, this.log);
    this.claims = new TaskClaims(bus, o.workerId, this.log);
    this.answers = new Answers(bus, o.workerId);
    this.prepared = o.preparedInputs ? new PreparedWrites(bus, RESIZE_METHOD, (outcome) => this.metrics.prepared.inc({ outcome })) : undefined;
    const infoLabels = (b: Backbone) => ({ backend: b.runtime.name, provider: b.runtime.provider ?? '', backbone: b.info.id });
    this.backbones = new BackboneCache(
      bus,
      this.log,
      (b) => this.metrics.info.set(infoLabels(b), 1),
      (b) => this.metrics.info.remove(infoLabels(b)),
      o.cacheDir,
    );
    this.closed = this.loop().finally(async () => {
      await this.prepared?.drain();
      this.backbones.disposeAll();
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
    this.log.info({ options: { ...this.o, workerId: undefined }, decodeThreads: this.o.decodeThreads }, 'worker started');
    // Pipeline: the next tasks' pulls, fetches and decodes (sharp's thread pool) overlap this
    // task's inference, and the last task's answer is published meanwhile. On TF.js inference holds
    // the event loop, so each round trip waits for a gap between backbone calls (ONNX Runtime runs on
    // its own thread): keeping two tasks in preparation hides those waits.
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
    // The last answers are published before the worker stops (closing gives them up if the bus is gone).
    await this.finishing;
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
    this.countOut(p);
    if (this.inHand === p) this.inHand = undefined;
  }

  /** The next task, pulled and its pixels in preparation, or null after an idle wait. */
  private async pull(): Promise<Prepared | null> {
    if (this.state !== 'running') return null;
    const msg = await this.source.next(this.backbones.fingerprints());
    return msg ? this.prepare(msg) : null;
  }

  private prepare(msg: JsMsg): Prepared | null {
    let task: ExtractionTask;
    try {
      task = codecs.task.decode(msg.data, `task on ${msg.subject}`);
      if (!task.backbone?.fingerprint || !task.backbone.inputSize || !task.jobId)
        throw new ProtocolError(`task on ${msg.subject} has no resolved backbone or job id`);
    } catch (err) {
      // A malformed task can never succeed: terminate it rather than redeliver it forever.
      this.log.error({ err, subject: msg.subject }, 'malformed task: terminated');
      this.metrics.tasks.inc({ outcome: 'malformed' });
      void deadLetter(this.bus, 'task', msg.data, msg.subject, (err as Error).message); // best effort: refused either way
      msg.term();
      return null;
    }
    this.metrics.inFlight.inc();
    const keepAlive = this.source.keepLease(msg);
    const timing = newPixelTiming();
    // Fetches and decodes (sharp's thread pool) overlap the previous task's inference, which holds the main thread.
    const pixels = this.answers.has(task.taskId)
      ? Promise.resolve([]) // answered already: nothing to fetch
      : fetchAndDecode(
          this.bus,
          task.imageSha256,
          { size: task.backbone.inputSize, limits: this.o.limits, decodeTimeoutMs: this.o.taskTimeoutMs, prepared: this.prepared },
          timing,
        );
    pixels.catch(() => undefined); // handled in process(); never an unhandled rejection meanwhile
    return { msg, task, pixels, timing, keepAlive, owned: false };
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
   * Runs one task: answered from memory, or claimed and embedded, its answer then published and
   * acked while the next task runs (finish); a failure as a whole is retried or reported.
   */
  private async process(p: Prepared): Promise<void> {
    this.inHand = p;
    let finishing = false;
    const { msg, task } = p;
    const log = this.jobLog(task.jobId);
    const t0 = performance.now();
    try {
      const answered = this.answers.get(task.taskId);
      if (answered) return await this.answerAgain(p, answered, log);
      // Pixels first: their fetch and decode started with the pull, and its timeout counts from there.
      let deadline = t0 + this.o.taskTimeoutMs;
      const items = await withDeadline(p.pixels, deadline, `fetching and decoding took over ${this.o.taskTimeoutMs} ms`);
      const tClaim = performance.now();
      if (!(await this.claimForBackbone(p, log))) return;
      deadline += performance.now() - tClaim; // waiting on another's claim is not this task's time
      countFetched(this.metrics, p.timing);
      const tLoad = performance.now();
      const backbone = await this.backbones.get(task);
      const tInfer = performance.now();
      deadline += tInfer - tLoad; // loading a model is a one-time cost, not the task's
      const out = await this.inference.embed(task, backbone, items, deadline, {
        inferBatchSize: this.o.inferBatchSize,
        ackWaitMs: this.source.ackWaitMs(msg),
        taskTimeoutMs: this.o.taskTimeoutMs,
        afterCall: () => {
          this.metrics.backboneCalls.inc();
          this.stats.backboneCalls++;
          msg.working(); // inference blocks the event loop; renew the lease between chunks
        },
      });
      const inferSeconds = (performance.now() - tInfer) / 1000;
      this.lastTaskSeconds = inferSeconds;
      countEmbedded(this.metrics, this.stats, out);
      const timings: TaskTimings = { fetchSeconds: p.timing.fetchSeconds, decodeSeconds: p.timing.decodeSeconds, inferSeconds, publishSeconds: 0 };
      const batch = this.answers.encodeAndKeep(task, out, timings, msg.info.streamSequence, runtimeLabel(backbone.runtime));
      if (this.state === 'closed' || this.inHand !== p) return; // handed back during inference
      // The answer is made. Publishing and acking it (round trips to the broker) overlaps the next
      // task's inference: the backbone does not wait for the bus. One answer is out at a time, in order.
      const previous = this.finishing;
      this.inHand = undefined;
      finishing = true;
      this.finishing = (async () => {
        await previous;
        await this.finish(p, batch, out, timings, log, t0);
      })();
    } catch (err) {
      await this.fail(p, err, log);
    } finally {
      if (!finishing) this.settle(p, log, t0);
    }
  }

  /** Publishes a task's answer and acks it (after the answer before it); a failure as a whole is retried or reported. */
  private async finish(p: Prepared, batch: Uint8Array, out: ImageVector[], timings: TaskTimings, log: Logger, t0: number): Promise<void> {
    try {
      timings.publishSeconds = await this.publishAndAck(p, batch, log);
      countDone(this.metrics, this.stats, out, timings);
      log.debug({ task: p.task.taskId, images: out.length, ...timings }, 'task done');
    } catch (err) {
      await this.fail(p, err, log);
    } finally {
      this.settle(p, log, t0);
    }
  }

  /** A task this worker is done with (acked, handed back or failed): its lease and claim renewals stop. */
  private settle(p: Prepared, log: Logger, t0: number): void {
    clearInterval(p.keepAlive);
    void p.claimKeeper?.stop();
    if (this.inHand === p) this.inHand = undefined;
    this.countOut(p);
    log.trace({ seconds: (performance.now() - t0) / 1000 }, 'task processed');
  }

  /** A task leaves the tasks in flight once, however it ends. */
  private countOut(p: Prepared): void {
    if (!p.settled) this.metrics.inFlight.dec();
    p.settled = true;
  }

  /** A task this worker answered lately came back (its ack lost): its answer is sent again, without the backbone. */
  private async answerAgain(p: Prepared, answer: Uint8Array, log: Logger): Promise<void> {
    await this.answers.publish(p.task, answer);
    await p.msg.ackAck();
    this.metrics.tasks.inc({ outcome: 'resent' });
    log.info({ task: p.task.taskId, delivery: p.msg.info.deliveryCount }, 'task came back: answered again without the backbone');
  }

  /**
   * Claims the task just before the backbone: prefetched tasks hold no claim, so a worker that dies leaves at most one.
   * @returns whether to embed it (false: it was acked as answered, or handed back).
   */
  private async claimForBackbone(p: Prepared, log: Logger): Promise<boolean> {
    const { msg, task } = p;
    const ackWait = this.source.ackWaitMs(msg);
    const claim = await this.claims.claim(task, msg, () => this.state === 'running', ackWait, this.o.taskTimeoutMs + TASK_CLAIM_TTL_MS);
    if (claim === 'answered') {
      // Answered by another worker whose ack was lost: running the backbone again would only repeat it.
      await msg.ackAck();
      this.metrics.tasks.inc({ outcome: 'cached' });
      log.info(
        { task: task.taskId, delivery: msg.info.deliveryCount },
        'task came back already answered (its vectors cached, or on their way from the worker that claimed it)',
      );
      return false;
    }
    if (claim === 'hand-back') {
      this.handBack(p);
      return false;
    }
    if (claim === 'claimed') {
      p.owned = true;
      p.claimKeeper = this.claims.keep(task, ackWait);
    }
    return true;
  }

  /**
   * Publishes the answer, marks the claim answered and acks. A broker failing over answers nothing
   * for a moment: the task (and its lease) is kept until the answer is out, however long that takes,
   * rather than handed to another worker that would embed it again. Only closing gives it up.
   * @returns the seconds publishing took.
   */
  private async publishAndAck(p: Prepared, batch: Uint8Array, log: Logger): Promise<number> {
    const { msg, task } = p;
    const ackWait = this.source.ackWaitMs(msg);
    const tPub = performance.now();
    await this.retryWhileRunning(msg, () => this.answers.publish(task, batch, 2000), Infinity);
    const publishSeconds = (performance.now() - tPub) / 1000;
    // The answer is out: say so on the claim (the last word on it: renewals stopped first), and ack.
    // An ack that does not get through is no reason to hand the task back: if the task comes back,
    // this worker answers it from memory, another finds the claim answered.
    await p.claimKeeper?.stop();
    await Promise.all([
      p.owned &&
        this.retryWhileRunning(msg, () => this.claims.markAnswered(task), ackWait * 0.8).catch((err) =>
          log.warn({ err, task: task.taskId }, 'cannot mark the claim answered'),
        ),
      this.retryWhileRunning(msg, () => msg.ackAck(), ackWait * 0.8).catch((err) =>
        log.warn({ err, task: task.taskId }, 'answer published but the ack did not get through; the task may come back, already answered'),
      ),
    ]);
    return publishSeconds;
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
   * Runs op, trying again (its lease renewed, every WORKER_RETRY_MS) for up to forMs while the bus
   * does not answer and the worker is running: a JetStream cluster electing a new stream leader
   * takes a few seconds.
   */
  private async retryWhileRunning<T>(msg: JsMsg, op: () => Promise<T>, forMs: number): Promise<T> {
    const until = performance.now() + forMs;
    for (;;) {
      try {
        return await op();
      } catch (err) {
        if (performance.now() > until || this.state !== 'running') throw err;
        msg.working();
        await new Promise((r) => setTimeout(r, WORKER_RETRY_MS));
      }
    }
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
      const failed = await this.answers.publishFailure(task, `extraction failed after ${msg.info.deliveryCount} attempts: ${message}`);
      msg.ack();
      this.metrics.tasks.inc({ outcome: 'failed' });
      this.metrics.failed.inc({ reason: 'internal' }, failed);
      this.stats.failed += failed;
    } catch (err2) {
      log.error({ err: err2, task: task.taskId }, 'cannot report the failed task; it will be redelivered');
      msg.nak(UNREPORTED_FAILURE_DELAY_MS);
    }
  }
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
