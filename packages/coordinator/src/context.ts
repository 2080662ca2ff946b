import type { Logger } from 'pino';
import type { Bus } from '@graft/protocol';
import type { CoordinatorMetrics } from './metrics.js';
import type { ResolvedCoordinatorOptions } from './options.js';
import type { Persist } from './outage.js';
import type { TaskQueue } from './flow/task-queue.js';
import type { JobTracker } from './tracking/tracker.js';

/** What every part of a coordinator shares: its bus, options, books and whether it may act. */
export interface CoordinatorContext {
  readonly bus: Bus;
  readonly o: ResolvedCoordinatorOptions;
  readonly log: Logger;
  readonly metrics: CoordinatorMetrics;
  readonly queue: TaskQueue;
  /** Bus operations, tried again through outages while this coordinator leads. */
  readonly persist: Persist;
  /** The books of this leadership term: a new term starts from a clean slate, rebuilt from JetStream. */
  jobs: JobTracker;
  /** Not closing. */
  isRunning(): boolean;
  /** Running and holding the lease (which may be stale). */
  isLeading(): boolean;
  /**
   * Whether this coordinator may change anything now: it leads, and its lease was renewed
   * within the TTL (a paused or cut-off leader stops before a standby can take over).
   */
  mayAct(): boolean;
}
