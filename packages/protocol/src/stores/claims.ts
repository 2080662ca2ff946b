import { handles, type Bus } from '../bus.js';
import { isRevisionConflict } from '../errors.js';

/*
 * The claims bucket (graft-claims): who embeds a task. Under each task id, `<worker> <proof>` while a
 * worker embeds it, or `answered:<worker> <proof>` once its answer is in JetStream, the proof derived
 * from the task's token (policy/task-tokens.ts), so only a holder of the task can write a claim others
 * believe; entries expire by themselves
 * (TASK_CLAIM_TTL_MS). Each worker also writes a probe key, `probe.<worker>`, to read the server's
 * clock. This module is the bucket's only reader and writer, and owns those value formats.
 */

/** A claim's value once its task's answer is in JetStream. */
const ANSWERED = 'answered:';
/** Prefix of each worker's probe key. */
const PROBE = 'probe.';

const text = new TextEncoder();
const untext = new TextDecoder();

/** A task's claim as stored. */
export interface Claim {
  /** The worker that holds (or answered) it. */
  holder: string;
  /** Whether its holder published the task's answer. */
  answered: boolean;
  /** The holder's proof of holding the task ('' in a claim written without one). */
  proof: string;
  /** The revision a take-over must name. */
  revision: number;
  /** When it was last written, on the NATS server's clock. */
  writtenAt: Date;
}

/**
 * Claims a task for a worker, if nobody holds it.
 * @returns false when somebody does. @throws when the bucket cannot be reached.
 */
export async function createClaim(bus: Bus, taskId: string, workerId: string, proof: string): Promise<boolean> {
  try {
    await handles(bus).claims.create(taskId, text.encode(`${workerId} ${proof}`));
    return true;
  } catch (err) {
    if (isRevisionConflict(err)) return false;
    throw err;
  }
}

/** A task's claim, or undefined when nobody holds it. */
export async function readClaim(bus: Bus, taskId: string): Promise<Claim | undefined> {
  const e = await handles(bus).claims.get(taskId);
  if (!e || e.operation !== 'PUT') return undefined;
  const value = untext.decode(e.value);
  const answered = value.startsWith(ANSWERED);
  const rest = answered ? value.slice(ANSWERED.length) : value;
  const space = rest.lastIndexOf(' ');
  return {
    holder: space < 0 ? rest : rest.slice(0, space),
    proof: space < 0 ? '' : rest.slice(space + 1),
    answered,
    revision: e.revision,
    writtenAt: e.created,
  };
}

/**
 * Takes a lapsed claim over, if it is still the revision that was read.
 * @returns false when somebody wrote it meanwhile.
 */
export async function takeOverClaim(bus: Bus, taskId: string, workerId: string, proof: string, revision: number): Promise<boolean> {
  try {
    await handles(bus).claims.update(taskId, text.encode(`${workerId} ${proof}`), revision);
    return true;
  } catch (err) {
    if (isRevisionConflict(err)) return false;
    throw err;
  }
}

/** Renews a worker's claim (its TTL starts again). */
export async function renewClaim(bus: Bus, taskId: string, workerId: string, proof: string): Promise<void> {
  await handles(bus).claims.put(taskId, text.encode(`${workerId} ${proof}`));
}

/** Marks a claim answered: the task's answer is in JetStream. */
export async function markClaimAnswered(bus: Bus, taskId: string, workerId: string, proof: string): Promise<void> {
  await handles(bus).claims.put(taskId, text.encode(`${ANSWERED}${workerId} ${proof}`));
}

/** Gives a claim up. */
export async function releaseClaim(bus: Bus, taskId: string): Promise<void> {
  await handles(bus).claims.delete(taskId);
}

/**
 * The NATS server's clock now, read from a write of this worker's own probe key.
 * @returns undefined when the probe cannot be written or read back.
 */
export async function serverNow(bus: Bus, workerId: string): Promise<Date | undefined> {
  const key = `${PROBE}${workerId.replace(/[^-/_=.a-zA-Z0-9]/g, '_')}`;
  await handles(bus).claims.put(key, new Uint8Array(0));
  return (await handles(bus).claims.get(key))?.created;
}
