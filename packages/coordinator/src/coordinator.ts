import { Stopped } from '@graft/head';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import {
  JobState,
  REDELIVERY_DELAY_MS,
  brokerStats,
  consumeManifests,
  consumeResults,
  type Bus,
  type ConsumerMessages,
  type JobStatus,
  type JsMsg,
} from '@graft/protocol';
import type { CoordinatorContext } from './context.js';
import { ManifestIntake } from './flow/intake.js';
import { JobFlow } from './flow/job-flow.js';
import { JobRecords } from './flow/job-records.js';
import { Leadership } from './leadership.js';
import { JobCensus } from './tracking/job-census.js';
import { coordinatorMetrics } from './metrics.js';
import { resolveCoordinatorOptions, type CoordinatorOptions, type ResolvedCoordinatorOptions } from './options.js';
import { retryThroughOutages } from './outage.js';
import { LostImages } from './flow/reconcile.js';
import { JobRecovery } from './flow/recovery.js';
import { ResultsIntake } from './flow/results-intake.js';
import { TaskQueue } from './flow/task-queue.js';
import { JobTracker } from './tracking/tracker.js';

/** Manifests handled at once. */
const MANIFESTS_AT_ONCE = 4;

export type CoordinatorState = 'running' | 'closing' | 'closed';

/** A running coordinator. Create with {@link startCoordinator}. */
export interface Coordinator {
  readonly state: CoordinatorState;
  readonly closed: Promise<void>;
  /** Stops consuming, stops training between epochs (the checkpoint keeps it), writes job records. Idempotent. */
  close(): Promise<void>;
}

export interface CoordinatorDeps {
  logger: Logger;
  registry?: Registry;
  /** Backend in use, for the graft_coordinator_info metric. */
  backend?: string;
}

/**
 * The coordinator's lifecycle: standby until it holds the lease, then one term as the leader
 * (recover unfinished jobs, consume manifests and results) until the lease is lost or it closes.
 * Manifests go to the {@link ManifestIntake}, vector batches to the {@link ResultsIntake}, jobs
 * move through the {@link JobFlow}, records are written by {@link JobRecords}.
 */
class CoordinatorImpl implements Coordinator {
  state: CoordinatorState = 'running';
  readonly closed: Promise<void>;
  private readonly ctx: CoordinatorContext;
  private readonly leadership: Leadership;
  private readonly records: JobRecords;
  private readonly flow: JobFlow;
  private readonly recovery: JobRecovery;
  private readonly manifests: ManifestIntake;
  private readonly results: ResultsIntake;
  private readonly lost: LostImages;
  /** Whether this coordinator holds the lease (it may still be stale: see {@link CoordinatorContext.mayAct}). */
  private leading = false;
  private readonly consumers: ConsumerMessages[] = [];
  private flushTimer?: NodeJS.Timeout;
  private readonly census = new JobCensus();

  constructor(bus: Bus, o: ResolvedCoordinatorOptions, deps: CoordinatorDeps) {
    const log = deps.logger.child({ component: 'coordinator', coordinator: o.coordinatorId });
    const persist = retryThroughOutages(log, () => this.state === 'running' && this.leading);
    const queue = new TaskQueue(
      bus,
      { taskSize: o.taskSize, ackWaitMs: o.taskAckWaitMs, maxDeliver: o.taskMaxDeliver },
      () => this.state === 'running',
      persist,
    );
    this.leadership = new Leadership(bus, o.coordinatorId, o.leaseTtlMs, log);
    this.census.start(bus, log);
    const metrics = coordinatorMetrics(deps.registry ?? new Registry(), {
      queue: () => queue.depth(),
      broker: () => brokerStats(bus),
      jobCounts: () => this.census.counts(),
      remaining: () =>
        [...this.ctx.jobs.values()].filter((j) => j.status.state === JobState.JOB_STATE_EXTRACTING).map((j) => [j.status.jobId, imagesRemaining(j.status)]),
    });
    this.ctx = {
      bus,
      o,
      log,
      metrics,
      queue,
      persist,
      jobs: new JobTracker(bus),
      isRunning: () => this.state === 'running',
      isLeading: () => this.state === 'running' && this.leading,
      mayAct: () => this.state === 'running' && this.leading && this.leadership.fresh(),
    };
    this.records = new JobRecords(this.ctx);
    this.flow = new JobFlow(this.ctx, this.records, (job) => this.recovery.reclaim(job));
    this.recovery = new JobRecovery(this.ctx, this.records, this.flow, () => this.manifests);
    this.manifests = new ManifestIntake(this.ctx, this.records, this.flow, (status, revision, manifest) => this.recovery.resume(status, revision, manifest));
    this.results = new ResultsIntake(this.ctx, this.records, this.flow);
    this.lost = new LostImages(this.ctx, this.flow);
    metrics.info.set({ backend: deps.backend ?? 'unknown' }, 1);
    metrics.leader.set(0);
    this.closed = this.run();
  }

  /** Standby until this coordinator holds the lease, then leads until it is lost (back to standby) or closed. */
  private async run(): Promise<void> {
    while (this.state === 'running') {
      if (!(await this.leadership.acquire(() => this.state !== 'running'))) break;
      this.leading = true;
      this.ctx.metrics.leader.set(1);
      this.leadership.keep(() => this.stepDown());
      try {
        await this.lead();
      } catch (err) {
        if (!(err instanceof Stopped)) this.ctx.log.error({ err }, 'leading failed: standing down and trying again');
      }
      this.leading = false;
      this.ctx.metrics.leader.set(0);
      this.flow.pauseAll();
      this.lost.stop();
      for (const c of this.consumers.splice(0)) c.stop();
      await this.flow.trainingSettled();
      clearInterval(this.flushTimer);
      // A clean slate for the next term: the next leader (maybe this one) rebuilds from JetStream.
      this.ctx.jobs = new JobTracker(this.ctx.bus);
      if (this.state === 'running') await sleep(1000);
    }
    await this.leadership.release();
    this.census.close();
    this.state = 'closed';
    this.ctx.log.info('coordinator stopped');
  }

  /** One term as the leader: resume unfinished jobs, then consume manifests and results. */
  private async lead(): Promise<void> {
    await this.ctx.queue.loadKey();
    await this.recovery.recoverAll();
    const flush = () => this.records.flush((job) => this.recovery.reclaim(job));
    this.flushTimer = setInterval(() => void flush(), this.ctx.o.statusIntervalMs);
    const [m, r] = await this.ctx.persist('opening the consumers', async () => [await consumeManifests(this.ctx.bus), await consumeResults(this.ctx.bus)]);
    this.consumers.push(m, r);
    if (!this.ctx.mayAct()) for (const c of this.consumers) c.stop(); // lost or closed meanwhile
    const stopDeadTasks = this.ctx.queue.watchDeadTasks((task, deliveries) => this.flow.failDeadTask(task, deliveries), this.ctx.log);
    this.lost.start();
    this.ctx.log.info('coordinator started');
    // Manifests a few at a time: one big job's checks never hold up the small one published after it.
    await Promise.all([this.handleEach(m, (x) => this.manifests.onManifest(x), MANIFESTS_AT_ONCE), this.handleEach(r, (x) => this.results.onResults(x))]);
    this.lost.stop();
    stopDeadTasks();
    await this.flow.trainingSettled();
    clearInterval(this.flushTimer);
    if (this.ctx.mayAct()) await flush();
  }

  /** The lease went to another coordinator: stop at once (training stops after its epoch). */
  private stepDown(): void {
    this.leading = false;
    for (const c of this.consumers) c.stop();
  }

  /**
   * Handles a consumer's messages until it stops, up to `atOnce` at a time (in order when 1); one
   * that fails for a reason outside it is handed back.
   */
  private async handleEach(msgs: ConsumerMessages, handle: (m: JsMsg) => Promise<void>, atOnce = 1): Promise<void> {
    const running = new Set<Promise<void>>();
    const one = async (msg: JsMsg) => {
      try {
        await handle(msg);
      } catch (err) {
        // Not the message's fault (stopping, or a lost race for a job record): hand it back.
        if (!(err instanceof Stopped)) this.ctx.log.error({ err, subject: msg.subject }, 'message handling failed: will be redelivered');
        msg.nak(REDELIVERY_DELAY_MS);
      }
    };
    for await (const msg of msgs) {
      if (!this.ctx.mayAct()) {
        msg.nak(REDELIVERY_DELAY_MS); // for whoever leads next
        continue;
      }
      const p = one(msg).finally(() => running.delete(p));
      running.add(p);
      if (running.size >= atOnce) await Promise.race(running);
    }
    await Promise.all(running);
  }

  async close(): Promise<void> {
    if (this.state === 'running') {
      this.state = 'closing';
      this.ctx.log.info('closing');
      for (const c of this.consumers) c.stop();
    }
    return this.closed;
  }
}

/**
 * Starts the coordinator on a bus: resumes unfinished jobs, then consumes manifests and
 * vector batches. Several may run: one leads, the others stand by.
 * @throws RangeError for bad options.
 */
export async function startCoordinator(bus: Bus, options: CoordinatorOptions, deps: CoordinatorDeps): Promise<Coordinator> {
  return new CoordinatorImpl(bus, resolveCoordinatorOptions(options), deps);
}

/** Images and augmented copies of a job not yet cached, extracted or failed. */
function imagesRemaining(s: JobStatus): number {
  const left = (c: JobStatus['counts']) => Math.max(0, (c?.total ?? 0) - (c?.cached ?? 0) - (c?.extracted ?? 0) - (c?.failed ?? 0));
  return left(s.counts) + left(s.augmented);
}
