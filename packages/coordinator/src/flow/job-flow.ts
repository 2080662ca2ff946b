import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCode, JobState, BUCKETS, isStoreFull, isVectorCacheFull, storeFullMessage, type ExtractionTask, type JobStatus } from '@graft/protocol';
import { formatReport, type EpochResult, type SweepHeadResult } from '@graft/head';
import type { CoordinatorContext } from '../context.js';
import type { JobRecords } from './job-records.js';
import { TRANSITIONS, moveJob, stopOutcome, trainingPhase } from './job-state.js';
import type { CoordinatorMetrics } from '../metrics.js';
import type { ActiveJob } from '../tracking/tracker.js';
import { trainJob, type TrainJobResult } from '../training/training.js';
import { predictJob } from '../training/prediction.js';
import type { JobWorkInput } from '../training/job-work.js';

/** Times the pre-training check extracts missing vectors again before failing those images. */
const MAX_MISSING_ROUNDS = 2;

/**
 * A job's way from extracting to training to done or failed: enqueueing its images, counting
 * their answers, scheduling its training (one head at a time in this process), re-extracting
 * vectors a broker lost, and the final record.
 */
export class JobFlow {
  /** The training in progress and those waiting: training shares this process's single backend thread. */
  private trainingQueue: Promise<void> = Promise.resolve();
  /** Best validation accuracy of each sweeping job's heads so far (for the gauge). */
  private readonly sweepBest = new Map<string, number>();

  constructor(
    private readonly ctx: CoordinatorContext,
    private readonly records: JobRecords,
    /** A record write of this leader was refused: pick the job up again from what is stored. */
    private readonly reclaim: (job: ActiveJob) => Promise<void>,
  ) {}

  /** Resolves when the training in progress (and any scheduled) has ended. */
  trainingSettled(): Promise<void> {
    return this.trainingQueue;
  }

  /** Publishes tasks for these images of a job. */
  async enqueue(job: ActiveJob, shas: string[], again = false): Promise<void> {
    job.enqueuing = (job.enqueuing ?? 0) + 1;
    try {
      const tasks = await this.ctx.queue.enqueue(job.manifest.jobId, job.backbone, job.manifest.vectorDtype, shas, job.log, again);
      this.ctx.metrics.tasksEnqueued.inc(tasks);
    } finally {
      job.enqueuing--;
    }
  }

  /**
   * Enqueues a job's pending images that are not already on their way (in a queued task, or
   * answered in a result not yet taken): however long this coordinator was away, nothing is
   * extracted twice. @returns how many were enqueued.
   */
  async enqueueRest(job: ActiveJob): Promise<number> {
    if (job.pending.size === 0) return 0;
    const onTheWay = await this.ctx.queue.inFlight(job.backbone.fingerprint);
    const missing = [...job.pending.keys()].filter((sha) => !onTheWay.has(sha)).sort();
    if (missing.length) await this.enqueue(job, missing, true);
    return missing.length;
  }

  /** Sends images whose answer was refused to a worker again, for every job still waiting for them. */
  async extractAgain(fp: string, imageIds: string[]): Promise<void> {
    for (const job of this.ctx.jobs.waitingFor(fp, imageIds))
      await this.enqueue(
        job,
        imageIds.filter((id) => job.pending.has(id)),
        true,
      );
  }

  /** This coordinator stops working on its jobs (its term ended): each is paused, its record as it was, for the next leader. */
  pauseAll(): void {
    for (const job of this.ctx.jobs.values()) if (TRANSITIONS[job.phase].includes('paused')) moveJob(job, 'paused');
  }

  /** Drops a job from memory (and from the vectors it waits for). */
  forget(job: ActiveJob): void {
    this.ctx.jobs.forget(job);
    this.sweepBest.delete(job.manifest.jobId);
  }

  /** Counts an image's answer for every job waiting on it; jobs with nothing left move on to training. @returns those jobs. */
  recordAnswer(fp: string, sha: string, code: ErrorCode, message: string): ActiveJob[] {
    const jobs = this.ctx.jobs.resolve(fp, sha, code, message);
    for (const job of jobs) this.trainIfExtracted(job);
    return jobs;
  }

  /** A task JetStream gave up on: its images are answered as failed, so the job ends. */
  failDeadTask(task: ExtractionTask, deliveries: number): void {
    const reason = `extraction gave up after ${deliveries} deliveries without an answer (a worker died on it each time: a poison image?)`;
    this.ctx.log.error({ job: task.jobId, task: task.taskId, images: task.imageSha256.length, deliveries }, 'task dead-lettered');
    this.ctx.metrics.vectors.inc({ kind: 'dead_letter' }, task.imageSha256.length);
    for (const sha of task.imageSha256) this.recordAnswer(task.backbone!.fingerprint!, sha, ErrorCode.ERROR_CODE_INTERNAL, reason);
  }

  /** Moves an extracting job with nothing pending to training, and schedules its training. */
  trainIfExtracted(job: ActiveJob): void {
    if (job.pending.size > 0 || job.phase !== 'extracting') return;
    moveJob(job, trainingPhase(job.manifest));
    const c = job.status.counts!;
    job.log.info({ cached: c.cached, extracted: c.extracted, failed: c.failed }, 'extraction complete');
    this.scheduleTraining(job);
  }

  /** Queues a job's training behind the one in progress; after an outage, once the lease is renewed. */
  scheduleTraining(job: ActiveJob, afterRenewal = false): void {
    this.trainingQueue = this.trainingQueue.then(async () => {
      while (afterRenewal && this.ctx.isLeading() && !this.ctx.mayAct()) await sleep(250);
      await this.train(job);
    });
  }

  private async train(job: ActiveJob): Promise<void> {
    if (this.ctx.jobs.get(job.manifest.jobId) !== job) return;
    if (!this.ctx.mayAct()) {
      // Still the leader but the lease is stale (a bus outage): train once it is renewed.
      if (this.ctx.isLeading()) this.scheduleTraining(job, true);
      return;
    }
    const s = job.status;
    // A job paused mid-audit trains again first: its checkpoint and stored folds make that quick.
    if (job.phase === 'paused' || job.phase === 'extracting') moveJob(job, trainingPhase(job.manifest));
    try {
      if (await this.reextractMissingVectors(job)) return;
      await this.records.write(job);
      await this.records.event(s.jobId, { state: s.state });
      if (job.manifest.predict) await this.runPrediction(job);
      else this.finishedTraining(job, await this.runTraining(job));
    } catch (err) {
      const outcome = stopOutcome(err);
      if (outcome === 'pause') {
        moveJob(job, 'paused');
        job.log.info({ why: (err as Error).message }, 'job paused (stopping, or the lease is not fresh); its checkpoint resumes it');
        // Still the leader, the lease only stale (a bus outage): carry on once it is renewed.
        if (this.ctx.isLeading()) this.scheduleTraining(job, true);
        return;
      }
      if (outcome === 'reclaim') {
        void this.reclaim(job);
        return;
      }
      job.log.error({ err }, 'training failed');
      // Checkpoints and the exported model go to the artifacts store.
      moveJob(job, 'failed', `training failed: ${isStoreFull(err) ? storeFullMessage('artifacts', BUCKETS.artifacts) : (err as Error).message}`);
    }
    await this.writeFinalRecord(job);
  }

  /** What training and prediction both take of a job: its manifest, entries and backbone, the bus, and when to stop. */
  private workInput(job: ActiveJob): JobWorkInput {
    return {
      bus: this.ctx.bus,
      manifest: job.manifest,
      images: job.images,
      backbone: job.backbone,
      log: job.log,
      persist: this.ctx.persist,
      shouldStop: () => !this.ctx.mayAct(),
    };
  }

  /** A prediction job's answers (graft predict): a head applied to every vector, no training. */
  private async runPrediction(job: ActiveJob): Promise<void> {
    const r = await predictJob({
      ...this.workInput(job),
      onPage: () => this.ctx.metrics.lastProgress.setToCurrentTime(),
      onAnswered: (answered, failed) => {
        this.ctx.metrics.predictions.inc({ outcome: 'answered' }, answered);
        this.ctx.metrics.predictions.inc({ outcome: 'failed' }, failed);
      },
    });
    moveJob(job, 'done');
    const text = `answered ${r.answered} photos${r.failed ? `, ${r.failed} without an answer (their extraction failed)` : ''}${r.suggested ? `; ${r.suggested} suggested for labelling` : ''}`;
    if (r.failed) addWarning(job.status, `${r.failed} photos without an answer (their extraction failed)`);
    await this.records.event(job.status.jobId, { message: text });
  }

  private runTraining(job: ActiveJob): Promise<TrainJobResult> {
    const s = job.status;
    const m = this.ctx.metrics;
    clearTrainingGauges(m);
    return trainJob({
      ...this.workInput(job),
      onAudit: async () => {
        if (job.phase !== 'auditing') moveJob(job, 'auditing'); // a resumed audit is in it already
        await this.records.write(job);
        await this.records.event(s.jobId, { state: s.state });
      },
      onAuditFold: (restored: boolean) => {
        if (!restored) m.auditFolds.inc();
      },
      onSweepHead: async (r: SweepHeadResult, finished: number, total: number) => {
        if (!r.restored) m.sweepHeads.inc();
        if (r.valAccuracy > (this.sweepBest.get(s.jobId) ?? -1)) this.sweepBest.set(s.jobId, r.valAccuracy);
        m.sweepBestAccuracy.set(this.sweepBest.get(s.jobId)!);
        m.lastProgress.setToCurrentTime();
        // Heads are not epochs: the record says how far the sweep is, not one head's loss.
        s.sweep = { headsDone: finished, heads: total, bestValAccuracy: this.sweepBest.get(s.jobId)! };
        await this.records.write(job);
      },
      onEpoch: async (r: EpochResult) => {
        if (!Number.isFinite(r.loss) || !Number.isFinite(r.valLoss))
          throw new Error(`the loss is not finite at epoch ${r.epoch} (training ${r.loss}, validation ${r.valLoss}): the head diverged`);
        s.training = r;
        m.epoch.set(r.epoch);
        m.loss.set({ split: 'train' }, r.loss);
        m.loss.set({ split: 'validation' }, r.valLoss);
        m.accuracy.set({ split: 'train' }, r.accuracy);
        m.accuracy.set({ split: 'validation' }, r.valAccuracy);
        m.lastProgress.setToCurrentTime();
        await this.records.write(job);
        await this.records.event(s.jobId, { epoch: r });
      },
    }).finally(() => clearTrainingGauges(m)); // between jobs they would show the last job's
  }

  private finishedTraining(job: ActiveJob, result: TrainJobResult): void {
    const s = job.status;
    moveJob(job, 'done');
    s.evaluation = {
      top1: result.report.top1,
      topKAccuracy: result.report.topKAccuracy,
      topK: result.report.topK,
      testImages: result.report.images,
      trainImages: result.trainImages,
      validationImages: result.validationImages,
    };
    this.ctx.metrics.testAccuracy.set(result.report.top1);
    if (result.warning) addWarning(s, result.warning);
    this.recordAudit(job, result);
    job.log.info(
      {
        top1: result.report.top1,
        topKAccuracy: result.report.topKAccuracy,
        topK: result.report.topK,
        test: result.report.images,
        resumedFromEpoch: result.resumedFromEpoch,
      },
      `job done\n${formatReport(result.report)}`,
    );
  }

  /** An audit's counts in the metrics, or why it was skipped in the job's warning. */
  private recordAudit(job: ActiveJob, result: TrainJobResult): void {
    const a = result.audit;
    if (!a) return;
    const m = this.ctx.metrics;
    if ('skipped' in a) {
      addWarning(job.status, `audit skipped: ${a.skipped}`);
      m.audits.inc({ outcome: 'skipped' });
      return;
    }
    m.audits.inc({ outcome: 'done' });
    m.auditFindings.inc({ kind: 'label_issue' }, a.report.labelIssues.length);
    m.auditFindings.inc({ kind: 'duplicate_group' }, a.report.duplicates.length);
    m.auditFindings.inc({ kind: 'leaked_pair' }, a.report.leaks.pairs.length);
    m.auditFindings.inc({ kind: 'outlier' }, a.report.outliers.length);
  }

  private async writeFinalRecord(job: ActiveJob): Promise<void> {
    try {
      await this.records.write(job);
    } catch (err) {
      // Stopping (or outvoted): the next leader resumes it from the checkpoint or its stored model.
      job.log.error({ err }, 'cannot write the final job record');
      return;
    }
    await this.records.event(job.status.jobId, { state: job.status.state });
    this.ctx.metrics.jobsFinished.inc({ outcome: job.status.state === JobState.JOB_STATE_DONE ? 'done' : 'failed' });
    this.forget(job);
  }

  /**
   * Checks, before training, that every image has its vector or its failure: a broker that crashed
   * can lose its most recent acknowledged writes. Images without either are extracted again (the job
   * goes back to extracting) rather than silently left out of training.
   * @returns whether the job went back to extracting.
   */
  private async reextractMissingVectors(job: ActiveJob): Promise<boolean> {
    await this.ctx.persist('reading the vector cache', () => this.ctx.jobs.scan(job, false));
    if (job.pending.size === 0) return false;
    job.missingRounds = (job.missingRounds ?? 0) + 1;
    if (job.missingRounds > MAX_MISSING_ROUNDS) {
      // Extracted again and still not kept: the cache refuses them (full), and trying on would never end.
      const full = await this.ctx
        .persist('reading the vector cache size', () => isVectorCacheFull(this.ctx.bus))
        .catch((err: unknown) => {
          job.log.warn({ err }, 'cannot read the vector cache size');
          return false;
        });
      const reason = `its vector was not kept by the vector cache after ${MAX_MISSING_ROUNDS + 1} extractions${full ? `: ${storeFullMessage('vectors', BUCKETS.vectors)}` : ''}`;
      job.log.error({ images: job.pending.size, full }, `vectors still missing after ${MAX_MISSING_ROUNDS} more extractions: those images fail`);
      for (const sha of [...job.pending.keys()]) this.ctx.jobs.resolve(job.backbone.fingerprint, sha, ErrorCode.ERROR_CODE_INTERNAL, reason);
      return false;
    }
    job.log.warn(
      { images: job.pending.size, round: job.missingRounds },
      'vectors missing from the cache before training (a broker lost recent writes, or the cache is full?): extracting them again',
    );
    moveJob(job, 'extracting');
    await this.records.write(job);
    await this.enqueueRest(job);
    return true;
  }
}

/** Adds a warning to a job's record after any it already has (the publisher's, the split's, the audit's). */
function addWarning(s: JobStatus, text: string): void {
  s.warning = s.warning ? `${s.warning}; ${text}` : text;
}

/** No training sample while no head is being trained. */
function clearTrainingGauges(m: CoordinatorMetrics): void {
  m.epoch.remove();
  m.loss.reset();
  m.accuracy.reset();
  m.sweepBestAccuracy.remove();
}
