import { AckPolicy, type JsMsg } from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import { handles, type Bus } from '../bus.js';
import { codecs, type ExtractionTask } from '../messages.js';
import { MAX_DELIVERIES_ADVISORY, STREAMS, SUBJECTS, extractorConsumer, fingerprintOfConsumer, taskSubject } from '../names.js';
import { TASK_ACK_WAIT_MS, TASK_MAX_DELIVER } from '../policy/retry.js';
import { ensureConsumer } from './consumers.js';

/*
 * The task queue (GRAFT_TASKS, work-queue retention) and the extractor consumers on it, one per
 * backbone fingerprint. This module is its only reader and writer: publishing, pulling, scanning
 * what is queued, removing answered tasks, and the tasks JetStream gave up on.
 */

type TaskFields = Parameters<typeof codecs.task.encode>[0];

/** Extraction consumer settings (defaults from the retry policy). */
export interface ExtractorConsumerOptions {
  /** How long a worker holds a task before it is redelivered, ms; workers extend it while busy. */
  ackWaitMs?: number;
  /** Deliveries of a task before it is given up on. */
  maxDeliver?: number;
}

/** Creates the durable pull consumer of one backbone's tasks, shared by all extractors. @returns its name. */
export async function ensureExtractorConsumer(bus: Bus, fingerprint: string, opts: ExtractorConsumerOptions = {}): Promise<string> {
  const name = extractorConsumer(fingerprint);
  await ensureConsumer(handles(bus).jsm, STREAMS.tasks, {
    durable_name: name,
    filter_subject: taskSubject(fingerprint),
    ack_policy: AckPolicy.Explicit,
    ack_wait: nanos(opts.ackWaitMs ?? TASK_ACK_WAIT_MS),
    max_deliver: opts.maxDeliver ?? TASK_MAX_DELIVER,
    max_ack_pending: 1000,
  });
  return name;
}

/**
 * Publishes one task on its backbone's subject. Its id is the message id, so publishing it again
 * inside the dedupe window stores nothing.
 * @throws as JetStream (isStoreFull when the queue is full: it refuses new tasks, never evicts).
 */
export async function publishTask(bus: Bus, task: TaskFields & { taskId: string; backbone: { fingerprint: string } }): Promise<void> {
  await handles(bus).js.publish(taskSubject(task.backbone.fingerprint), codecs.task.encode(task), { msgID: task.taskId });
}

/** One extractor queue: its consumer and what it holds. */
export interface TaskQueueInfo {
  consumer: string;
  fingerprint: string;
  ackWaitMs: number;
  /** 0 when the consumer sets none. */
  maxDeliver: number;
  /** Tasks waiting for a worker. */
  pending: number;
  /** Tasks held by a worker, not yet acknowledged. */
  ackPending: number;
}

/** Every extractor queue on the task stream. */
export async function* listTaskQueues(bus: Bus): AsyncGenerator<TaskQueueInfo> {
  for await (const ci of handles(bus).jsm.consumers.list(STREAMS.tasks)) {
    const fingerprint = fingerprintOfConsumer(ci.name);
    if (!fingerprint) continue;
    yield {
      consumer: ci.name,
      fingerprint,
      ackWaitMs: Math.max(100, Math.floor((ci.config.ack_wait ?? TASK_ACK_WAIT_MS * 1e6) / 1e6)),
      maxDeliver: Math.max(0, ci.config.max_deliver ?? 0),
      pending: ci.num_pending,
      ackPending: ci.num_ack_pending,
    };
  }
}

/** One backbone's queue: tasks waiting and held (undefined when its consumer does not exist). */
export async function taskQueueOf(bus: Bus, fingerprint: string): Promise<{ pending: number; ackPending: number } | undefined> {
  const ci = await handles(bus)
    .jsm.consumers.info(STREAMS.tasks, extractorConsumer(fingerprint))
    .catch(() => undefined);
  return ci && { pending: ci.num_pending, ackPending: ci.num_ack_pending };
}

/** Tasks waiting for a worker, and tasks held by one, summed over backbones. */
export async function taskQueueDepth(bus: Bus): Promise<{ pending: number; unacked: number }> {
  let pending = 0;
  let unacked = 0;
  for await (const q of listTaskQueues(bus)) {
    pending += q.pending;
    unacked += q.ackPending;
  }
  return { pending, unacked };
}

/** Pulls from one extractor queue. */
export interface TaskPuller {
  /** The next task, or null when none came within `expiresMs`. */
  next(expiresMs: number): Promise<JsMsg | null>;
}

/** Opens one extractor queue for pulling. */
export async function openTaskQueue(bus: Bus, consumer: string): Promise<TaskPuller> {
  const c = await handles(bus).js.consumers.get(STREAMS.tasks, consumer);
  return { next: (expires) => c.next({ expires }) };
}

/**
 * Image ids of one backbone already on their way: in a task still on the queue, or answered in a
 * vector batch not yet taken from the results stream (malformed messages skipped: their consumers
 * dead-letter them).
 * @param read wraps each read (the coordinator's outage policy).
 */
export async function imagesOnTheWay(
  bus: Bus,
  fingerprint: string,
  read: <T>(what: string, op: () => Promise<T>) => Promise<T> = (_w, op) => op(),
): Promise<Set<string>> {
  const ids = new Set<string>();
  await scanStream(bus, STREAMS.tasks, taskSubject(fingerprint), read, (data) => {
    for (const sha of codecs.task.decode(data, 'queued task').imageSha256) ids.add(sha);
  });
  await scanStream(bus, STREAMS.results, SUBJECTS.results, read, (data) => {
    const b = codecs.vectorBatch.decode(data, 'queued vector batch');
    if (b.backboneFingerprint === fingerprint) for (const v of b.vectors) ids.add(v.sha256);
  });
  return ids;
}

/** Reads every message of a stream on a subject, oldest first. */
async function scanStream(
  bus: Bus,
  stream: string,
  subject: string,
  read: <T>(what: string, op: () => Promise<T>) => Promise<T>,
  each: (data: Uint8Array) => void,
): Promise<void> {
  for (let seq = 1; ;) {
    // next_by_subj: the first message on the subject at or after seq (server 2.9+).
    const m = await read(`reading ${stream}`, () => handles(bus).jsm.streams.getMessage(stream, { seq, next_by_subj: subject } as unknown as { seq: number }));
    if (!m) return;
    try {
      each(m.data);
    } catch {
      // Malformed: not ours to judge here, the stream's consumer dead-letters it.
    }
    seq = m.seq + 1;
  }
}

/**
 * Takes an answered task off the queue, as a second acknowledgement: when a worker's own ack was
 * lost (a broker died under it), the task is not redelivered and embedded again. Checks that the
 * message at that sequence is that task.
 * @returns whether it was removed (a task already gone, or another at that sequence, is left alone).
 */
export async function removeAnsweredTask(bus: Bus, seq: number, taskId: string): Promise<boolean> {
  const m = await handles(bus).jsm.streams.getMessage(STREAMS.tasks, { seq });
  if (!m) return false;
  try {
    if (codecs.task.decode(m.data).taskId !== taskId) return false;
  } catch {
    return false; // not a task: the extractor consumer dead-letters it
  }
  return handles(bus).jsm.streams.deleteMessage(STREAMS.tasks, seq, false);
}

/**
 * Calls onDead for every task delivered MaxDeliver times without an ack (its workers kept dying on
 * it), then takes it off the queue. Runs until the returned stop is called.
 */
export function watchDeadTasks(bus: Bus, onDead: (task: ExtractionTask, deliveries: number) => void, onError: (err: unknown) => void): () => void {
  const sub = handles(bus).nc.subscribe(MAX_DELIVERIES_ADVISORY);
  void (async () => {
    for await (const m of sub) {
      try {
        const a = JSON.parse(new TextDecoder().decode(m.data)) as { stream_seq: number; deliveries: number };
        const stored = await handles(bus).jsm.streams.getMessage(STREAMS.tasks, { seq: a.stream_seq });
        if (!stored) continue; // answered meanwhile
        onDead(codecs.task.decode(stored.data, `dead-lettered task ${a.stream_seq}`), a.deliveries);
        await handles(bus).jsm.streams.deleteMessage(STREAMS.tasks, a.stream_seq, false);
      } catch (err) {
        onError(err);
      }
    }
  })();
  return () => sub.unsubscribe();
}
