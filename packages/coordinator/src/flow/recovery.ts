import { Stopped } from '@graft/head';
import { failedStatus } from './job-state.js';
import {
  JobState,
  ProtocolError,
  isTerminal,
  jobStateName,
  listJobIds,
  readJobRecord,
  readManifestHeader,
  type DatasetManifest,
  type JobStatus,
} from '@graft/protocol';
import { resolvedFromFields } from '@graft/vision';
import type { CoordinatorContext } from '../context.js';
import { headerOf, type ListedManifest, type ManifestIntake } from './intake.js';
import type { JobFlow } from './job-flow.js';
import type { JobRecords } from './job-records.js';
import { ManifestError } from './manifest.js';
import type { ActiveJob } from '../tracking/tracker.js';

/**
 * Picking jobs up from what JetStream holds: every unfinished job when a term starts, a job whose
 * manifest came back after a restart, and a job whose record a broker moved back.
 */
export class JobRecovery {
  constructor(
    private readonly ctx: CoordinatorContext,
    private readonly records: JobRecords,
    private readonly flow: JobFlow,
    private readonly intake: () => ManifestIntake,
  ) {}

  /** Picks up every unfinished job recorded in the jobs bucket. */
  async recoverAll(): Promise<void> {
    const ids = await this.ctx.persist('listing job records', () => listJobIds(this.ctx.bus));
    for (const id of ids) await this.recover(id);
  }

  /** Picks up one job from its stored record and manifest, if it is unfinished. */
  private async recover(id: string): Promise<void> {
    const rec = await this.ctx
      .persist('reading a job record', () => readJobRecord(this.ctx.bus, id))
      .catch((err: unknown) => {
        if (err instanceof Stopped) throw err;
        this.ctx.log.error({ err, job: id }, 'job record unreadable: not resumed');
        return undefined;
      });
    if (!rec || isTerminal(rec.status.state) || rec.status.state === JobState.JOB_STATE_QUEUED) return;
    let manifest: DatasetManifest | undefined;
    let unreadable = false;
    try {
      manifest = await this.ctx.persist('reading a stored manifest', () => readManifestHeader(this.ctx.bus, id));
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      this.ctx.log.error({ err, job: id }, 'stored manifest unreadable');
      unreadable = true;
    }
    if (!manifest) {
      // One unreadable job must not stop the coordinator from serving the others.
      await this.fail(
        rec.status,
        rec.revision,
        unreadable ? 'its stored manifest is not a readable manifest for this job' : 'its manifest is no longer in the manifests stream',
      );
      return;
    }
    await this.resume(rec.status, rec.revision, manifest);
  }

  private async fail(status: JobStatus, revision: number, reason: string): Promise<void> {
    failedStatus(status, reason);
    await this.ctx
      .persist('recording a failed job', () => this.records.put(status, revision))
      .catch((err: unknown) => this.ctx.log.error({ err, job: status.jobId }, 'cannot record the failure'));
  }

  /** Carries on with a job from its record: extracting what is not on its way, or training. */
  async resume(status: JobStatus, revision: number, manifest: ListedManifest): Promise<void> {
    const log = this.ctx.log.child({ job: status.jobId });
    let images;
    try {
      images = await this.intake().readImages(manifest);
    } catch (err) {
      if (!(err instanceof ManifestError)) throw err;
      log.error({ err }, "the stored manifest's images are unreadable");
      await this.fail(status, revision, `its stored manifest's images are unreadable: ${err.problems.join('; ')}`);
      return;
    }
    if (!status.backbone?.fingerprint) {
      // Stopped before the backbone was resolved: start over.
      await this.intake().startJob(headerOf(manifest), images, revision, log);
      return;
    }
    const job = this.ctx.jobs.track(headerOf(manifest), images, status, resolvedFromFields(status.backbone), revision, log);
    await this.ctx.persist('reading the vector cache', () => this.ctx.jobs.scan(job, false));
    if (status.state === JobState.JOB_STATE_EXTRACTING) {
      const enqueued = await this.flow.enqueueRest(job);
      log.info({ state: jobStateName(status.state), pending: job.pending.size, onTheWay: job.pending.size - enqueued, counts: status.counts }, 'job resumed');
      this.flow.trainIfExtracted(job);
    } else {
      log.info({ state: jobStateName(status.state), counts: status.counts }, 'job resumed');
      this.flow.scheduleTraining(job);
    }
  }

  /**
   * A record write of this leader was refused (the stored revision is not the one it wrote).
   * Holding the lease, only a broker that lost its most recent writes in a crash explains it:
   * pick the job up again from what is stored, as a new leader would.
   */
  async reclaim(job: ActiveJob): Promise<void> {
    this.flow.forget(job);
    if (!this.ctx.mayAct()) return;
    job.log.warn('the job record is not the one this coordinator wrote last (a broker lost recent writes?): resuming the job from what is stored');
    await this.recover(job.manifest.jobId).catch((err: unknown) => job.log.error({ err }, 'cannot resume the job; the next leader will'));
  }
}
