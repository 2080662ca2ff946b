import type { JsMsg } from '@nats-io/jetstream';
import type { Logger } from 'pino';
import { BUCKETS, isRevisionConflict, kvKeyLocation, vectorKey, type Bus, type ExtractionTask } from '@graft/protocol';

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

const text = new TextEncoder();
const untext = new TextDecoder();

/**
 * Who embeds a task. JetStream can deliver one task to two workers at once: its lease runs out while
 * the first still holds it (renewals lost with a server that led the consumer, a broker restarted),
 * or its ack is lost after the answer went out. The first worker to claim a task (a key in the
 * claims bucket, renewed while it works, expiring by itself) embeds it; another waits, keeping its
 * delivery, until the task is answered (and acks it) or the claim lapses (its holder died) and it
 * takes the task over.
 */
export class TaskClaims {
  constructor(
    private readonly bus: Bus,
    private readonly workerId: string,
    private readonly log: Logger,
  ) {}

  /**
   * Claims a task before its images go through the backbone; waits while another worker holds it.
   * @param running whether the worker still takes work (a closing worker stops waiting).
   * @param maxWaitMs how long to wait on another's claim before embedding anyway.
   */
  async claim(task: ExtractionTask, msg: JsMsg, running: () => boolean, maxWaitMs: number): Promise<ClaimOutcome> {
    // A redelivery may come after the answer was cached and the claim lapsed (the ack lost).
    if (msg.info.deliveryCount > 1 && (await this.answered(task))) return 'answered';
    const until = performance.now() + maxWaitMs;
    let waited = false;
    for (;;) {
      try {
        await this.bus.claims.create(task.taskId, text.encode(this.workerId));
        if (waited) this.log.info({ task: task.taskId }, 'the claim on a redelivered task lapsed: taking it over');
        return 'claimed';
      } catch (err) {
        if (!isRevisionConflict(err)) {
          this.log.debug({ err, task: task.taskId }, 'cannot claim the task (claims bucket unreachable): embedding it anyway');
          return 'unclaimed';
        }
      }
      const holder = await this.holder(task.taskId);
      if (holder === this.workerId) return 'claimed'; // our own claim, from an earlier delivery
      if (await this.answered(task)) return 'answered';
      if (!running()) return 'hand-back';
      if (performance.now() > until) {
        this.log.warn({ task: task.taskId, holder }, 'another worker has held this task too long: embedding it as well');
        return 'unclaimed';
      }
      if (!waited) this.log.info({ task: task.taskId, holder, delivery: msg.info.deliveryCount }, 'task redelivered while another worker embeds it: waiting for its answer');
      waited = true;
      msg.working();
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }

  /** Keeps this worker's claim alive during a long task (best effort: a lost renewal risks only a second embedding). */
  renew(taskId: string): void {
    this.bus.claims.put(taskId, text.encode(this.workerId)).catch((err) => this.log.debug({ err, task: taskId }, 'claim renewal failed'));
  }

  /** Gives a claim up (the task handed back or failed) so the next worker need not wait for it to lapse. */
  release(taskId: string): void {
    this.bus.claims.delete(taskId).catch((err) => this.log.debug({ err, task: taskId }, 'claim release failed; it lapses by itself'));
  }

  private async holder(taskId: string): Promise<string | undefined> {
    const e = await this.bus.claims.get(taskId).catch(() => null);
    return e && e.operation === 'PUT' ? untext.decode(e.value) : undefined;
  }

  /**
   * Whether the vector cache holds an answer (vector or final failure) for every image of the task.
   * Asked of the stream's subject counts, not the values: workers may not read the cache.
   */
  async answered(task: ExtractionTask): Promise<boolean> {
    try {
      const fp = task.backbone!.fingerprint!;
      for (const sha of task.imageSha256) {
        const { stream, subject } = kvKeyLocation(BUCKETS.vectors, vectorKey(fp, sha));
        const info = await this.bus.jsm.streams.info(stream, { subjects_filter: subject });
        if (!info.state.subjects?.[subject]) return false;
      }
      return true;
    } catch {
      return false; // cannot tell
    }
  }
}
