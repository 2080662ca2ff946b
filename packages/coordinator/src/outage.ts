import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { JobRecordConflict, ProtocolError, isRevisionConflict } from '@graft/protocol';

/** Runs one bus operation, trying again while the bus is unreachable. */
export type Persist = <T>(what: string, op: () => Promise<T>) => Promise<T>;

/** Thrown instead of trying again once the coordinator stops (closing, or no longer the leader). */
export class Abandoned extends Error {
  constructor(what: string, options?: { cause?: unknown }) {
    super(`gave up on ${what}: the coordinator is stopping`, options);
    this.name = 'Abandoned';
  }
}

/**
 * Outages are waited out, not failed: a bus operation that fails for a reason outside the job
 * (broker down, restarting, timing out) is tried again with backoff (0.25 s doubling to 5 s),
 * for as long as `keepTrying()` holds. Failures that are the job's own, or a lost revision race,
 * are thrown at once.
 */
export function waitOutOutages(log: Logger, keepTrying: () => boolean): Persist {
  return async function persist<T>(what: string, op: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await op();
      } catch (err) {
        if (!isTransient(err)) throw err;
        if (!keepTrying()) throw new Abandoned(what, { cause: err });
        if (attempt === 1 || attempt % 20 === 0) log.warn({ err: (err as Error).message, attempt }, `${what} failed; retrying until the bus is back`);
        await sleep(Math.min(5000, 250 * 2 ** Math.min(attempt - 1, 5)));
      }
    }
  };
}

/**
 * Whether a failure says the bus is unreachable or busy rather than that the operation is wrong:
 * the client's connection and timeout errors, a JetStream that has no responders or answers 503
 * (restarting, electing a leader), and a publish whose acknowledgement never came.
 */
function isTransient(err: unknown): boolean {
  if (err instanceof JobRecordConflict || err instanceof ProtocolError || isRevisionConflict(err)) return false;
  // A full stream, or a message over max_payload, is the same next time: the caller decides.
  if (/maximum (messages|bytes|payload)|max_payload|insufficient resources/i.test((err as Error)?.message ?? '')) return false;
  for (let e = err as { name?: string; message?: string; cause?: unknown; status?: number } | undefined, depth = 0; e && depth < 4; e = e.cause as typeof e, depth++) {
    if (['TimeoutError', 'NoRespondersError', 'ConnectionError', 'ClosedConnectionError', 'DrainingConnectionError', 'RequestError'].includes(e.name ?? '')) return true;
    if (e.status === 503) return true;
    if (/timeout|timed out|no responders|disconnect|connection (closed|refused|lost)|temporarily unavailable|not (yet )?available|leader/i.test(e.message ?? '')) return true;
  }
  return false;
}
