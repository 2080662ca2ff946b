import type { Logger } from 'pino';
import {
  claimProof,
  createClaim,
  hasCachedVectors,
  markClaimAnswered,
  readClaim,
  releaseClaim,
  renewClaim,
  serverNow,
  takeOverClaim,
  type Bus,
  type ExtractionTask,
  type JsMsg,
} from '@graft/protocol';

/** What a worker does with a task it was delivered. */
export type ClaimOutcome =
  /** Embed it: the claim is this worker's. */
  | 'claimed'
  /** Embed it without a claim: the claims bucket cannot be reached, or another held it too long (embedding twice is only slower). */
  | 'unclaimed'
  /** Ack it without embedding: every image's answer is in the vector cache already. */
  | 'answered'
  /** Hand it back: the worker is closing while another holds the claim. */
  | 'hand-back';

/** How often a worker waiting on another's claim looks again, ms. */
const POLL_MS = 1000;

/** A claim being kept alive; stop() ends the renewals and waits for one in flight. */
export interface ClaimKeeper {
  stop(): Promise<void>;
}

/**
 * Who embeds a task. JetStream can deliver one task to two workers at once: its lease runs out while
 * the first still holds it (renewals lost with a server that led the consumer, a broker restarted),
 * or its ack is lost after the answer went out. The first worker to claim a task (a key in the
 * claims bucket, renewed while it works) embeds it; another waits, keeping its delivery, until the
 * task is answered (and acks it), or the claim is released (handed back) or stops being renewed
 * for a whole AckWait (its holder died), and then takes the task over. Claims expire from the bucket
 * by themselves after TASK_CLAIM_TTL_MS.
 */
export class TaskClaims {
  constructor(
    private readonly bus: Bus,
    private readonly workerId: string,
    private readonly log: Logger,
  ) {}

  /**
   * Claims a task before its images go through the backbone; waits while another worker holds it
   * and keeps renewing it. A claim not renewed for a whole `staleMs` (the task's AckWait: holders
   * renew three times per AckWait) is taken over. Its age is read on the NATS server's clock (the
   * time of its last write against the time of a write of this worker's), so a task redelivered
   * because its holder died is taken over as soon as the claim is that old, not a whole AckWait
   * after this worker first looked.
   * @param running whether the worker still takes work (a closing worker stops waiting).
   * @param maxWaitMs how long to wait on a claim that keeps being renewed before embedding anyway.
   */
  async claim(task: ExtractionTask, msg: JsMsg, running: () => boolean, staleMs: number, maxWaitMs: number): Promise<ClaimOutcome> {
    // A redelivery may come after the answer was cached and the claim lapsed (the ack lost).
    if (msg.info.deliveryCount > 1 && (await this.isCached(task))) return 'answered';
    const until = performance.now() + maxWaitMs;
    const proof = claimProof(task.token, 'claim');
    let waiting = false;
    for (;;) {
      try {
        if (await createClaim(this.bus, task.taskId, this.workerId, proof)) {
          if (waiting) this.log.info({ task: task.taskId }, 'the claim on a redelivered task was released: taking the task');
          return 'claimed';
        }
      } catch (err) {
        this.log.debug({ err, task: task.taskId }, 'cannot claim the task (claims bucket unreachable): embedding it anyway');
        return 'unclaimed';
      }
      const e = await readClaim(this.bus, task.taskId).catch((err: unknown) => {
        this.log.debug({ err, task: task.taskId }, 'cannot read the claim: trying to claim again');
        return undefined;
      });
      if (!e) continue; // released meanwhile: claim it
      const holder = e.holder;
      if (e.proof !== claimProof(task.token, e.answered ? 'answered' : 'claim')) {
        // Written by someone who was never given the task: not a claim to wait for or believe.
        this.log.warn({ task: task.taskId, holder, answered: e.answered }, 'a claim on this task does not prove it holds the task: ignored, taking the task');
        if (await takeOverClaim(this.bus, task.taskId, this.workerId, proof, e.revision).catch(() => false)) return 'claimed';
        continue;
      }
      // Its holder published the answer and its ack was lost: the answer is on its way to the coordinator.
      if (e.answered) return 'answered';
      if (holder === this.workerId) return 'claimed'; // our own claim, from an earlier delivery
      if (await this.isCached(task)) return 'answered';
      if (!running()) return 'hand-back';
      if (!waiting)
        this.log.info(
          { task: task.taskId, holder, delivery: msg.info.deliveryCount },
          'task redelivered while another worker embeds it: waiting for its answer',
        );
      waiting = true;
      const age = await this.serverAge(e.writtenAt);
      if (age !== undefined && age > staleMs) {
        // Not renewed for a whole AckWait: its holder died or lost the bus. Take it over, unless someone else just did.
        const took = await takeOverClaim(this.bus, task.taskId, this.workerId, proof, e.revision).catch((err: unknown) => {
          this.log.debug({ err, task: task.taskId }, 'cannot take the lapsed claim over: looking again');
          return false;
        });
        if (took) {
          this.log.warn(
            { task: task.taskId, holder, ageMs: age },
            'the claim on a redelivered task lapsed (its worker stopped renewing it): taking the task over',
          );
          return 'claimed';
        }
        continue;
      }
      if (performance.now() > until) {
        this.log.warn({ task: task.taskId, holder }, 'another worker has held this task too long: embedding it as well');
        return 'unclaimed';
      }
      msg.working();
      await new Promise((r) => setTimeout(r, Math.min(POLL_MS, Math.max(50, staleMs / 4))));
    }
  }

  /**
   * How long ago, on the server's clock, a claim was last written: the time of a write of this
   * worker's own (its probe key) minus that. Undefined when the probe cannot be written.
   */
  private async serverAge(lastWrite: Date): Promise<number | undefined> {
    try {
      const now = await serverNow(this.bus, this.workerId);
      return now ? now.getTime() - lastWrite.getTime() : undefined;
    } catch (err) {
      this.log.debug({ err }, 'cannot read the server clock: waiting on (bounded by maxWaitMs)');
      return undefined;
    }
  }

  /**
   * Keeps this worker's claim alive while it holds the task, three times per AckWait (best effort:
   * a lost renewal risks only a second embedding).
   */
  keep(task: ExtractionTask, ackWaitMs: number): ClaimKeeper {
    const taskId = task.taskId;
    let inFlight: Promise<unknown> = Promise.resolve();
    const timer = setInterval(
      () => {
        inFlight = renewClaim(this.bus, taskId, this.workerId, claimProof(task.token, 'claim')).catch((err) =>
          this.log.debug({ err, task: taskId }, 'claim renewal failed'),
        );
      },
      Math.max(50, Math.floor(ackWaitMs / 3)),
    );
    return {
      stop: async () => {
        clearInterval(timer);
        await inFlight;
      },
    };
  }

  /**
   * Marks a claim answered, once the task's answer is in JetStream: a worker the task is redelivered
   * to (the ack lost) acknowledges it instead of waiting for the claim to lapse and embedding it again.
   * @throws when the bus does not take it (the caller retries while it can).
   */
  async markAnswered(task: ExtractionTask): Promise<void> {
    await markClaimAnswered(this.bus, task.taskId, this.workerId, claimProof(task.token, 'answered'));
  }

  /** Gives a claim up (the task handed back or failed) so the next worker need not wait for it to lapse. */
  release(taskId: string): void {
    releaseClaim(this.bus, taskId).catch((err) => this.log.debug({ err, task: taskId }, 'claim release failed; it lapses by itself'));
  }

  /**
   * Whether the vector cache holds an answer (vector or final failure) for every image of the task.
   * False when the bus cannot tell (the task is then embedded, at worst twice).
   */
  async isCached(task: ExtractionTask): Promise<boolean> {
    return hasCachedVectors(this.bus, task.backbone!.fingerprint!, task.imageSha256).catch((err: unknown) => {
      this.log.debug({ err, task: task.taskId }, 'cannot tell whether the task is cached: embedding it');
      return false;
    });
  }
}
