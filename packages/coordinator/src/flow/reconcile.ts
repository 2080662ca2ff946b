import { JobState, taskQueueOf } from '@graft/protocol';
import type { CoordinatorContext } from '../context.js';
import type { JobFlow } from './job-flow.js';
import type { ActiveJob } from '../tracking/tracker.js';

/** Checks without progress after which a job is reconciled even while its backbone's queue is busy. */
const STALLED_CHECKS = 5;

/**
 * Finds images a job waits for that are on no queue and in no answer, and enqueues them again: a
 * worker that took a task and acknowledged it without answering (or acknowledged tasks it never
 * pulled) cannot stall a job. A job is looked at when its backbone's queue holds nothing (its
 * images cannot be on their way then) or when it has not moved for {@link STALLED_CHECKS} checks;
 * the look itself ({@link JobFlow.enqueueRest}) reads what is queued and answered, so an image on
 * its way is never sent twice. Takeovers reconcile on their own (recovery enqueues the rest).
 */
export class LostImages {
  private timer?: NodeJS.Timeout;
  private running = false;
  /** Per job: its answered count at the last check, and checks since it moved. */
  private readonly seen = new Map<string, { answered: number; still: number }>();

  constructor(
    private readonly ctx: CoordinatorContext,
    private readonly flow: JobFlow,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.check(), this.ctx.o.reconcileIntervalMs);
  }

  stop(): void {
    clearInterval(this.timer);
    this.seen.clear();
  }

  /** One pass over the extracting jobs (skipped while the last one runs). */
  async check(): Promise<void> {
    if (this.running || !this.ctx.mayAct()) return;
    this.running = true;
    try {
      const jobs = [...this.ctx.jobs.values()].filter((j) => j.status.state === JobState.JOB_STATE_EXTRACTING && j.pending.size > 0);
      for (const id of this.seen.keys()) if (!jobs.some((j) => j.manifest.jobId === id)) this.seen.delete(id);
      for (const job of jobs) if (this.ctx.mayAct()) await this.reconcile(job);
    } catch (err) {
      this.ctx.log.warn({ err }, 'checking for lost tasks failed; the next check tries again');
    } finally {
      this.running = false;
    }
  }

  private async reconcile(job: ActiveJob): Promise<void> {
    const id = job.manifest.jobId;
    const answered = answeredOf(job);
    const last = this.seen.get(id);
    const still = last && last.answered === answered ? last.still + 1 : 0;
    this.seen.set(id, { answered, still });
    // New to the checks, moving (its tasks are being answered), or still being enqueued: leave it.
    if (still === 0 || job.enqueuing) return;
    const queue = await taskQueueOf(this.ctx.bus, job.backbone.fingerprint);
    const idle = !queue || (queue.pending === 0 && queue.ackPending === 0);
    if (!idle && still < STALLED_CHECKS) return;
    const lost = await this.flow.enqueueRest(job);
    if (!lost) return;
    this.ctx.metrics.imagesLost.inc(lost);
    job.log.warn(
      { images: lost, pending: job.pending.size },
      'images on no queue and in no answer (a task taken and acknowledged without an answer): enqueued again',
    );
    this.seen.set(id, { answered, still: 0 });
  }
}

function answeredOf(job: ActiveJob): number {
  const n = (c: ActiveJob['status']['counts']) => (c?.extracted ?? 0) + (c?.failed ?? 0) + (c?.cached ?? 0);
  return n(job.status.counts) + n(job.status.augmented);
}
