import type { ConsumerMessages } from '@nats-io/jetstream';
import { handles, type Bus } from '../bus.js';
import { CONSUMERS, STREAMS, resultSubject } from '../names.js';
import { randomBytes } from 'node:crypto';

/*
 * The results stream (GRAFT_RESULTS, work-queue retention): vector batches from workers to the
 * coordinator. This module is its only reader and writer.
 */

/** This process's part of its results' message ids: nobody else can know it. */
const PUBLISHER = randomBytes(12).toString('hex');

/**
 * Publishes a task's vector batch. Its message id is the task id and this process's own random
 * part: a publish tried again after a lost reply stores nothing twice, and nobody else (task ids can
 * be guessed, and a task's holder knows its token) can publish first under that id to have the real
 * answer dropped as a duplicate. An answer sent twice by two processes is counted once by the coordinator.
 */
export async function publishResults(bus: Bus, task: { jobId: string; taskId: string }, batch: Uint8Array, timeoutMs = 10_000): Promise<void> {
  await handles(bus).js.publish(resultSubject(task.jobId), batch, { msgID: `${task.taskId}.${PUBLISHER}`, timeout: timeoutMs });
}

/** The coordinator's stream of vector batches (stop it to end). */
export async function consumeResults(bus: Bus, maxMessages = 64): Promise<ConsumerMessages> {
  const c = await handles(bus).js.consumers.get(STREAMS.results, CONSUMERS.results);
  return c.consume({ max_messages: maxMessages });
}
