import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { Stopped } from '@graft/head';
import { isTransient, outageDelayMs } from '@graft/protocol';

/** Runs one bus operation, trying again while the bus is unreachable. */
export type Persist = <T>(what: string, op: () => Promise<T>) => Promise<T>;

/**
 * Outages are waited out, not failed: a bus operation that fails for a reason outside the job
 * (the retry policy's isTransient: broker down, restarting, timing out) is tried again with the
 * policy's outage backoff, for as long as `keepTrying()` holds. Failures that are the job's own,
 * or a lost revision race, are thrown at once.
 */
export function retryThroughOutages(log: Logger, keepTrying: () => boolean): Persist {
  return async function persist<T>(what: string, op: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await op();
      } catch (err) {
        if (!isTransient(err)) throw err;
        if (!keepTrying()) throw new Stopped(`${what}: the coordinator is closing or no longer leads`, { cause: err });
        if (attempt === 1 || attempt % 20 === 0) log.warn({ err: (err as Error).message, attempt }, `${what} failed; retrying until the bus is back`);
        await sleep(outageDelayMs(attempt));
      }
    }
  };
}
