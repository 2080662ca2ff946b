import type { Logger } from 'pino';
import { JobState, jobStateName, watchJobStates, type Bus } from '@graft/protocol';

/*
 * How many jobs the cluster holds in each state, read from the job records themselves (a watch on
 * the jobs bucket): true across every transition and every takeover, finished jobs included, and
 * the same on every coordinator, leading or not.
 */
export class JobCensus {
  private readonly states = new Map<string, JobState>();
  private stopWatch?: () => void;

  /** Starts watching; a watch that cannot start is logged and the counts stay empty. */
  start(bus: Bus, log: Logger): void {
    watchJobStates(bus, (jobId, state) => (state === undefined ? this.states.delete(jobId) : this.states.set(jobId, state))).then(
      (stop) => (this.stopWatch = stop),
      (err: unknown) => log.warn({ err }, 'cannot watch the job records: graft_jobs stays empty'),
    );
  }

  /** Jobs by state name, every state present (0 when none). */
  counts(): Map<string, number> {
    const counts = new Map(
      Object.values(JobState)
        .filter((v): v is JobState => typeof v === 'number' && v > 0)
        .map((s) => [jobStateName(s), 0]),
    );
    for (const s of this.states.values()) counts.set(jobStateName(s), (counts.get(jobStateName(s)) ?? 0) + 1);
    return counts;
  }

  close(): void {
    this.stopWatch?.();
  }
}
