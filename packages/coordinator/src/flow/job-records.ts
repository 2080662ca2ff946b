import { Stopped } from '@graft/head';
import { JobRecordConflict, createJobRecord, publishJobEvent, writeJobRecord, type JobEventBody, type JobStatus } from '@graft/protocol';
import type { CoordinatorContext } from '../context.js';
import type { ActiveJob } from '../tracking/tracker.js';

/**
 * How the coordinator writes what it knows of its jobs: records (chained per job, each over the
 * revision it last wrote), events, the periodic flush of moved counts, and the jobs gauge.
 */
export class JobRecords {
  private flushing = false;

  constructor(private readonly ctx: CoordinatorContext) {}

  /**
   * Writes an active job's record over the revision it last wrote, through outages.
   * @throws JobRecordConflict when somebody else wrote it; Stopped when stopping.
   */
  write(job: ActiveJob): Promise<void> {
    // One write at a time per job: each names the revision the previous one made.
    const write = job.writes.then(async () => {
      job.dirty = false;
      try {
        if (!this.ctx.mayAct()) throw new Stopped(`writing the record of ${job.manifest.jobId}`);
        job.revision = await this.ctx.persist('writing a job record', () => this.put(job.status, job.revision));
      } catch (err) {
        job.dirty = true;
        throw err;
      }
    });
    job.writes = write.catch(() => undefined); // the caller sees the failure; the chain goes on
    return write;
  }

  /** Creates (revision 0) or replaces a record. @returns the new revision. */
  put(status: JobStatus, revision: number): Promise<number> {
    return revision ? writeJobRecord(this.ctx.bus, status, revision) : createJobRecord(this.ctx.bus, status);
  }

  /** Appends to a job's history: for watchers, so a failure is logged and never stops the job. */
  async event(jobId: string, e: JobEventBody): Promise<void> {
    await publishJobEvent(this.ctx.bus, jobId, e).catch((err: unknown) => this.ctx.log.debug({ err }, 'event not published'));
  }

  /**
   * Writes the records of jobs whose counts moved, with a progress event each. A record somebody
   * else wrote is handed to `onConflict`; anything else stops this flush (the next one tries again).
   */
  async flush(onConflict: (job: ActiveJob) => Promise<void>): Promise<void> {
    if (this.flushing) return;
    this.flushing = true;
    try {
      for (const job of [...this.ctx.jobs.values()]) {
        if (!job.dirty) continue;
        try {
          await this.write(job);
        } catch (err) {
          if (!(err instanceof JobRecordConflict)) throw err;
          await onConflict(job);
          continue;
        }
        await this.event(job.status.jobId, { progress: job.status.counts });
      }
    } catch (err) {
      this.ctx.log.debug({ err }, 'status flush stopped; will retry');
    } finally {
      this.flushing = false;
    }
  }
}
