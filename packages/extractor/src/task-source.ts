import type { Logger } from 'pino';
import { TASK_ACK_WAIT_MS, listTaskQueues, openTaskQueue, type Bus, type JsMsg, type TaskPuller } from '@graft/protocol';

export interface TaskSourceOptions {
  /** How long one pull waits for a task, ms. */
  pullExpiresMs: number;
  /** Wait between looks for work when every queue is empty, ms. */
  idleWaitMs: number;
  /** MaxDeliver assumed for a consumer whose config has not been read. */
  maxDeliver: number;
}

/**
 * Where a worker's tasks come from, and the leases it holds on them: picks the extractor
 * queue with work (a loaded backbone's first), pulls one task at a time, and knows each
 * queue's AckWait (leases are renewed well inside it) and MaxDeliver.
 */
export class TaskSource {
  /** AckWait of each extractor consumer, ms. */
  private readonly ackWaits = new Map<string, number>();
  /** MaxDeliver of each extractor consumer. */
  private readonly maxDelivers = new Map<string, number>();
  /** Ends every idle wait at once (on close). */
  private readonly wakers = new Set<() => void>();
  /** The queue the last pull got a task from: pulled again while it gives work, without listing consumers. */
  private lastConsumer?: TaskPuller;
  private open = true;

  constructor(
    private readonly bus: Bus,
    private readonly o: TaskSourceOptions,
    private readonly log: Logger,
  ) {}

  /**
   * One task from a queue with pending work, or null after an idle wait (no work, or the
   * broker unavailable). `loaded` names the backbones (fingerprints) this worker has in memory.
   */
  async next(loaded: ReadonlySet<string>): Promise<JsMsg | null> {
    if (!this.open) return null;
    let msg: JsMsg | null = null;
    try {
      let consumer = this.lastConsumer;
      if (consumer) msg = await consumer.next(this.o.pullExpiresMs);
      // The last queue ran dry (its job done, or another backbone's job queued): look for work
      // elsewhere at once, not after an idle wait.
      if (!msg) {
        const { work, wait } = await this.pickConsumer(loaded);
        const name = work ?? wait;
        consumer = name ? await openTaskQueue(this.bus, name) : undefined;
        // No queue has work: wait in a pull on one (a loaded backbone's first) rather than asleep, so
        // a task published meanwhile is shared among the waiting workers, not all taken by whichever
        // one pulls without pause (a worker that takes tasks and never answers them, say).
        if (consumer) msg = await consumer.next(work ? this.o.pullExpiresMs : this.o.idleWaitMs);
        if (!msg && wait && !work) return null;
      }
      this.lastConsumer = msg ? consumer : undefined;
    } catch (err) {
      this.lastConsumer = undefined;
      this.log.debug({ err }, 'pull failed (broker unavailable?)');
    }
    if (!msg) await this.idle();
    return msg;
  }

  /** Stops pulling and ends any idle wait at once. */
  close(): void {
    this.open = false;
    for (const w of [...this.wakers]) w();
  }

  /** The queue with work to pull from (a loaded backbone's first), and the one to wait on when none has any. */
  private async pickConsumer(loaded: ReadonlySet<string>): Promise<{ work?: string; wait?: string }> {
    let work: string | undefined;
    let wait: string | undefined;
    let waitLoaded = false;
    for await (const q of listTaskQueues(this.bus)) {
      this.ackWaits.set(q.consumer, q.ackWaitMs);
      if (q.maxDeliver > 0) this.maxDelivers.set(q.consumer, q.maxDeliver);
      if (!wait || (loaded.has(q.fingerprint) && !waitLoaded)) {
        wait = q.consumer;
        waitLoaded = loaded.has(q.fingerprint);
      }
      // Unacknowledged tasks count too: a task whose worker died is redelivered only to a
      // pull that is waiting, so someone must keep pulling until they are acked.
      if (q.pending === 0 && q.ackPending === 0) continue;
      if (loaded.has(q.fingerprint)) return { work: q.consumer, wait };
      work ??= q.consumer;
    }
    return { work, wait };
  }

  private idle(): Promise<void> {
    if (!this.open) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.wakers.delete(done);
        resolve();
      };
      const t = setTimeout(done, this.o.idleWaitMs);
      this.wakers.add(done);
    });
  }

  /** The AckWait of the queue a task came from, ms. */
  ackWaitMs(msg: JsMsg): number {
    return this.ackWaits.get(msg.info.consumer) ?? TASK_ACK_WAIT_MS;
  }

  /** The MaxDeliver of the queue a task came from. */
  maxDeliver(msg: JsMsg): number {
    return this.maxDelivers.get(msg.info.consumer) ?? this.o.maxDeliver;
  }

  /** Renews a task's lease three times per AckWait, so one late timer never loses it. @returns the timer. */
  keepLease(msg: JsMsg): NodeJS.Timeout {
    return setInterval(() => msg.working(), Math.max(50, Math.floor(this.ackWaitMs(msg) / 3)));
  }
}
