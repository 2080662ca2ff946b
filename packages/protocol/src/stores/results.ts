import type { ConsumerMessages } from '@nats-io/jetstream';
import type { Bus } from '../bus.js';
import { CONSUMERS, STREAMS, resultSubject } from '../names.js';

/*
 * The results stream (GRAFT_RESULTS, work-queue retention): vector batches from workers to the
 * coordinator. This module is its only reader and writer.
 */

/**
 * Publishes a task's vector batch. The task id is the message id, so a retry after a crash between
 * publish and ack stores nothing twice.
 */
export async function publishResults(bus: Bus, jobId: string, taskId: string, batch: Uint8Array, timeoutMs = 10_000): Promise<void> {
  await bus.js.publish(resultSubject(jobId), batch, { msgID: taskId, timeout: timeoutMs });
}

/** The coordinator's stream of vector batches (stop it to end). */
export async function consumeResults(bus: Bus, maxMessages = 64): Promise<ConsumerMessages> {
  const c = await bus.js.consumers.get(STREAMS.results, CONSUMERS.results);
  return c.consume({ max_messages: maxMessages });
}
