import { createHash, randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import {
  ensureExtractorConsumer,
  imagesOnTheWay,
  isStoreFull,
  publishTask,
  queueFullDelayMs,
  removeAnsweredTask,
  taskKey,
  taskQueueDepth,
  taskToken,
  isTaskToken,
  watchDeadTasks,
  type Bus,
  type ExtractionTask,
  type VectorDType,
} from '@graft/protocol';
import { resolvedFields, type ResolvedBackbone } from '@graft/vision';
import type { Persist } from '../outage.js';

export interface TaskQueueOptions {
  /** Images per task. */
  taskSize: number;
  /** AckWait of the extractor consumers created, ms. */
  ackWaitMs: number;
  /** MaxDeliver of the extractor consumers created. */
  maxDeliver: number;
}

/**
 * How the coordinator uses the task queue (the tasks store owns the stream): tasks of `taskSize`
 * images with content-derived ids, back-pressure when the queue is full, what is already on its
 * way, and the tasks JetStream gave up on.
 */
export class TaskQueue {
  /** The coordinators' key for task tokens (loaded when a term starts). */
  private key?: Uint8Array;

  constructor(
    private readonly bus: Bus,
    private readonly o: TaskQueueOptions,
    /** While false, a full queue stops waiting for room and the publish fails. */
    private readonly running: () => boolean,
    /** Bus operations, tried again through outages. */
    private readonly persist: Persist,
  ) {}

  /** Loads (or makes) the coordinators' task key: before any task is enqueued or any result checked. */
  async loadKey(): Promise<void> {
    this.key ??= await this.persist('reading the task key', () => taskKey(this.bus));
  }

  /** Whether a batch carries the token of the task it says it answers, for exactly that task's images. */
  isAnswerOf(b: { jobId: string; taskId: string; fingerprint: string; imageIds: readonly string[]; token: string }): boolean {
    if (!this.key) throw new Error('the task key is not loaded');
    return isTaskToken(this.key, b, b.token);
  }

  /**
   * Publishes tasks of `taskSize` images for a job's cache misses. Task ids are derived from
   * the content, so enqueueing the same images again inside the dedupe window publishes nothing.
   * @returns the number of tasks published.
   */
  async enqueue(jobId: string, backbone: ResolvedBackbone, dtype: VectorDType, shas: string[], log: Logger, again = false): Promise<number> {
    // Images enqueued again are on no queue any more (checked by the caller): new ids, so the
    // dedupe window cannot mistake them for the tasks that were lost.
    const salt = again ? `${randomBytes(4).toString('hex')}:` : '';
    await this.persist('creating the task consumer', () =>
      ensureExtractorConsumer(this.bus, backbone.fingerprint, { ackWaitMs: this.o.ackWaitMs, maxDeliver: this.o.maxDeliver }),
    );
    const ref = resolvedFields(backbone);
    let tasks = 0;
    for (let i = 0; i < shas.length; i += this.o.taskSize) {
      const chunk = shas.slice(i, i + this.o.taskSize);
      const taskId = `${jobId}-${createHash('sha256')
        .update(salt + chunk.join(','))
        .digest('hex')
        .slice(0, 16)}`;
      if (!this.key) throw new Error('the task key is not loaded');
      const token = taskToken(this.key, { jobId, taskId, fingerprint: backbone.fingerprint, imageIds: chunk });
      await this.publishWhenRoom(
        { jobId, taskId, token, backbone: { ...ref, fingerprint: backbone.fingerprint }, imageSha256: chunk, vectorDtype: dtype },
        log,
      );
      tasks++;
    }
    log.info({ tasks, images: shas.length }, 'tasks enqueued');
    return tasks;
  }

  /** A full task queue refuses new tasks (discard: new): wait for room rather than drop work. */
  private async publishWhenRoom(task: Parameters<typeof publishTask>[1], log: Logger): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.persist('publishing a task', () => publishTask(this.bus, task));
        return;
      } catch (err) {
        if (!isStoreFull(err) || !this.running()) throw err;
        if (attempt === 1) log.warn('task queue is full: waiting for workers to make room');
        await sleep(queueFullDelayMs(attempt));
      }
    }
  }

  /**
   * Images of one backbone that are already on their way: in a task still on the queue, or
   * answered in a vector batch the coordinator has not taken yet. A restarted coordinator
   * enqueues only the rest, so nothing is extracted twice, however long it was down.
   */
  inFlight(fingerprint: string): Promise<Set<string>> {
    return imagesOnTheWay(this.bus, fingerprint, this.persist);
  }

  /**
   * Takes an answered task off the queue, as a second acknowledgement (see removeAnsweredTask).
   * Best effort: a task left on the queue is only answered again from the cache.
   */
  async remove(seq: number, taskId: string, log: Logger): Promise<void> {
    await removeAnsweredTask(this.bus, seq, taskId).catch((err: unknown) =>
      log.debug({ err, task: taskId }, 'answered task not removed from the queue (its ack removes it)'),
    );
  }

  /** Tasks waiting for a worker, and tasks held by one, summed over backbones. */
  depth(): Promise<{ pending: number; unacked: number }> {
    return taskQueueDepth(this.bus);
  }

  /** Calls onDead for every task JetStream gave up on (then removed). Runs until the returned stop is called. */
  watchDeadTasks(onDead: (task: ExtractionTask, deliveries: number) => void, log: Logger): () => void {
    return watchDeadTasks(this.bus, onDead, (err) => log.error({ err }, 'cannot handle a max-deliveries advisory'));
  }
}
