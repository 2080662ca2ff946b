import { createHash, randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import {
  MAX_DELIVERIES_ADVISORY,
  STREAMS,
  SUBJECTS,
  codecs,
  ensureExtractorConsumer,
  taskSubject,
  type Bus,
  type ExtractionTask,
  type VectorDType,
} from '@graft/protocol';
import { resolvedFields, type ResolvedBackbone } from '@graft/vision';
import type { Persist } from './outage.js';

export interface TaskQueueOptions {
  /** Images per task. */
  taskSize: number;
  /** AckWait of the extractor consumers created, ms. */
  ackWaitMs: number;
  /** MaxDeliver of the extractor consumers created. */
  maxDeliver: number;
}

/**
 * The extraction task queue (GRAFT_TASKS): publishing tasks with back-pressure, its depth
 * for the metrics, and the tasks JetStream gave up on (MaxDeliver advisories).
 */
export class TaskQueue {
  constructor(
    private readonly bus: Bus,
    private readonly o: TaskQueueOptions,
    /** While false, a full queue stops waiting for room and the publish fails. */
    private readonly running: () => boolean,
    /** Bus operations, tried again through outages. */
    private readonly persist: Persist,
  ) {}

  /**
   * Publishes tasks of `taskSize` images for a job's cache misses. Task ids are derived from
   * the content, so enqueueing the same images again inside the dedupe window publishes nothing.
   * @returns the number of tasks published.
   */
  async enqueue(jobId: string, backbone: ResolvedBackbone, dtype: VectorDType, shas: string[], log: Logger, again = false): Promise<number> {
    // Images enqueued again are on no queue any more (checked by the caller): new ids, so the
    // dedupe window cannot mistake them for the tasks that were lost.
    const salt = again ? `${randomBytes(4).toString('hex')}:` : '';
    await this.persist('creating the task consumer', () => ensureExtractorConsumer(this.bus.jsm, backbone.fingerprint, { ackWaitMs: this.o.ackWaitMs, maxDeliver: this.o.maxDeliver }));
    const ref = resolvedFields(backbone);
    let tasks = 0;
    for (let i = 0; i < shas.length; i += this.o.taskSize) {
      const chunk = shas.slice(i, i + this.o.taskSize);
      const taskId = `${jobId}-${createHash('sha256').update(salt + chunk.join(',')).digest('hex').slice(0, 16)}`;
      const bytes = codecs.task.encode({ jobId, taskId, backbone: ref, imageSha256: chunk, vectorDtype: dtype });
      await this.publish(taskSubject(backbone.fingerprint), bytes, taskId, log);
      tasks++;
    }
    log.info({ tasks, images: shas.length }, 'tasks enqueued');
    return tasks;
  }

  /** A full task queue refuses new tasks (discard: new): wait for room rather than drop work. */
  private async publish(subject: string, bytes: Uint8Array, msgID: string, log: Logger): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.persist('publishing a task', () => this.bus.js.publish(subject, bytes, { msgID }));
        return;
      } catch (err) {
        if (!/maximum (messages|bytes)/i.test((err as Error).message) || !this.running()) throw err;
        if (attempt === 1) log.warn('task queue is full: waiting for workers to make room');
        await sleep(Math.min(5000, 100 * attempt));
      }
    }
  }

  /**
   * Images of one backbone that are already on their way: in a task still on the queue, or
   * answered in a vector batch the coordinator has not taken yet. A restarted coordinator
   * enqueues only the rest, so nothing is extracted twice, however long it was down.
   */
  async inFlight(fingerprint: string): Promise<Set<string>> {
    const shas = new Set<string>();
    await this.scan(STREAMS.tasks, taskSubject(fingerprint), (data) => {
      for (const sha of codecs.task.decode(data, 'queued task').imageSha256) shas.add(sha);
    });
    await this.scan(STREAMS.results, SUBJECTS.results, (data) => {
      const b = codecs.vectorBatch.decode(data, 'queued vector batch');
      if (b.backboneFingerprint === fingerprint) for (const v of b.vectors) shas.add(v.sha256);
    });
    return shas;
  }

  /** Reads every message of a stream on a subject, oldest first (malformed ones skipped). */
  private async scan(stream: string, subject: string, each: (data: Uint8Array) => void): Promise<void> {
    for (let seq = 1; ; ) {
      // next_by_subj: the first message on the subject at or after seq (server 2.9+).
      const m = await this.persist(`reading ${stream}`, () => this.bus.jsm.streams.getMessage(stream, { seq, next_by_subj: subject } as unknown as { seq: number }));
      if (!m) return;
      try {
        each(m.data);
      } catch {
        // not ours to judge here: the consumer of that stream dead-letters it
      }
      seq = m.seq + 1;
    }
  }

  /**
   * Takes an answered task off the queue, as a second acknowledgement: when a worker's own ack
   * was lost (a broker died under it), the task is not redelivered and embedded again.
   * Checks that the message at that sequence is that task; a task already gone is fine.
   */
  async remove(seq: number, taskId: string): Promise<void> {
    const m = await this.bus.jsm.streams.getMessage(STREAMS.tasks, { seq }).catch(() => null);
    if (!m) return;
    try {
      if (codecs.task.decode(m.data).taskId !== taskId) return;
    } catch {
      return;
    }
    await this.bus.jsm.streams.deleteMessage(STREAMS.tasks, seq, false).catch(() => undefined);
  }

  /** Tasks waiting for a worker, and tasks held by one, summed over backbones. */
  async depth(): Promise<{ pending: number; unacked: number }> {
    let pending = 0;
    let unacked = 0;
    for await (const ci of this.bus.jsm.consumers.list(STREAMS.tasks)) {
      pending += ci.num_pending;
      unacked += ci.num_ack_pending;
    }
    return { pending, unacked };
  }

  /**
   * Calls onDead for every task delivered MaxDeliver times without an ack (its workers kept
   * dying on it), then takes it off the queue. Runs until the returned stop is called.
   */
  watchDeadTasks(onDead: (task: ExtractionTask, deliveries: number) => void, log: Logger): () => void {
    const sub = this.bus.nc.subscribe(MAX_DELIVERIES_ADVISORY);
    void (async () => {
      for await (const m of sub) {
        try {
          const a = JSON.parse(new TextDecoder().decode(m.data)) as { stream_seq: number; deliveries: number };
          const stored = await this.bus.jsm.streams.getMessage(STREAMS.tasks, { seq: a.stream_seq }).catch(() => null);
          if (!stored) continue;
          onDead(codecs.task.decode(stored.data, `dead-lettered task ${a.stream_seq}`), a.deliveries);
          await this.bus.jsm.streams.deleteMessage(STREAMS.tasks, a.stream_seq, false).catch(() => undefined);
        } catch (err) {
          log.error({ err }, 'cannot handle a max-deliveries advisory');
        }
      }
    })();
    return () => sub.unsubscribe();
  }
}
