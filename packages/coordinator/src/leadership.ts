import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { createLease, deleteLease, isRevisionConflict, readLease, writeLease, type Bus } from '@graft/protocol';

/**
 * The coordinator lease: at most one coordinator leads (consumes manifests and results,
 * trains); others wait as standbys. The lease is a KV key written with revision checks:
 * - a standby takes it only after its revision stayed unchanged for a whole TTL by the
 *   standby's own clock (no trust in the leader's clock);
 * - the leader renews it three times per TTL, naming the revision it wrote, so a renewal
 *   after somebody else took it fails: the leader then steps down at once;
 * - the leader acts only while its last successful renewal is younger than the TTL, so a
 *   leader that was paused (or cut off) stops before a standby can have taken over.
 */
export class Leadership {
  private revision = 0;
  private renewedAt = -Infinity;
  private timer?: NodeJS.Timeout;
  private lost = false;

  constructor(
    private readonly bus: Bus,
    private readonly holder: string,
    private readonly ttlMs: number,
    private readonly log: Logger,
  ) {}

  /**
   * Waits until this process holds the lease.
   * @returns false when `cancelled()` turned true first.
   */
  async acquire(cancelled: () => boolean): Promise<boolean> {
    let seen = -1;
    let seenAt = 0;
    let announced = false;
    while (!cancelled()) {
      try {
        const e = await readLease(this.bus);
        if (!e) {
          this.revision = await createLease(this.bus, this.holder, this.ttlMs);
          return this.won('the lease was free');
        }
        if (e.revision !== seen) {
          seen = e.revision;
          seenAt = performance.now();
          if (!announced) {
            this.log.info({ leader: e.lease.holder, ttlMs: this.ttlMs }, 'another coordinator leads: standing by');
            announced = true;
          }
        } else if (performance.now() - seenAt > this.ttlMs) {
          this.revision = await writeLease(this.bus, this.holder, this.ttlMs, e.revision);
          return this.won(`the leader has not renewed for ${this.ttlMs} ms`);
        }
      } catch (err) {
        // Lost a race for the key, or the bus is down: look again.
        this.log.debug({ err }, 'lease not taken');
      }
      await sleep(Math.min(1000, this.ttlMs / 4));
    }
    return false;
  }

  private won(why: string): true {
    this.renewedAt = performance.now();
    this.lost = false;
    this.log.info({ why }, 'this coordinator leads');
    return true;
  }

  /** Renews the lease until it is lost (someone else holds it: onLost is called once) or released. */
  keep(onLost: () => void): void {
    const renew = async () => {
      try {
        this.revision = await writeLease(this.bus, this.holder, this.ttlMs, this.revision);
        this.renewedAt = performance.now();
      } catch (err) {
        if (isRevisionConflict(err) && (await this.reclaimOwn())) {
          this.renewedAt = performance.now();
        } else if (isRevisionConflict(err)) {
          this.lost = true;
          this.stopRenewing();
          const rival = await readLease(this.bus).catch(() => undefined);
          if (rival && rival.lease.holder && rival.lease.holder !== this.holder) {
            this.log.error({ leader: rival.lease.holder }, 'lost the coordinator lease to another coordinator: stepping down');
          } else {
            // Refused, yet no other coordinator holds it: the bucket does not keep what it is given.
            this.log.error(
              { stored: rival?.lease.holder ?? null },
              'the leases bucket refused this coordinator\'s renewal and no other coordinator holds the lease: the JetStream store is damaged (two nats-servers on one data folder?); stepping down. See docs/cluster.md, "Recovering a data folder"',
            );
          }
          onLost();
          return;
        }
        // The bus is down: keep trying; fresh() turns false once the TTL has passed.
        this.log.debug({ err }, 'lease renewal failed; retrying');
      }
      if (this.timer) this.timer = setTimeout(() => void renew(), this.ttlMs / 3);
    };
    this.timer = setTimeout(() => void renew(), this.ttlMs / 3);
  }

  /**
   * After a refused renewal: whether the stored lease is still ours (a broker that crashed lost our
   * latest renewal, so the stored revision is older), and if so renew it over that revision.
   */
  private async reclaimOwn(): Promise<boolean> {
    try {
      const e = await readLease(this.bus);
      if (!e || e.lease.holder !== this.holder) return false;
      this.revision = await writeLease(this.bus, this.holder, this.ttlMs, e.revision);
      this.log.warn('the stored lease was an older revision of ours (a broker lost recent writes): renewed over it');
      return true;
    } catch (err) {
      this.log.debug({ err }, 'cannot read or renew the stored lease: treated as lost');
      return false;
    }
  }

  /** Whether this process may act as the leader now. */
  fresh(): boolean {
    return !this.lost && performance.now() - this.renewedAt < this.ttlMs;
  }

  private stopRenewing(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Stops renewing and frees the lease (if still ours), so a standby takes over at once. */
  async release(): Promise<void> {
    this.stopRenewing();
    if (this.lost || !this.revision) return;
    // Best effort: a lease not deleted lapses by itself after its TTL.
    await deleteLease(this.bus, this.revision).catch((err: unknown) => this.log.debug({ err }, 'lease not released; it lapses by itself'));
    this.revision = 0;
    this.renewedAt = -Infinity;
  }
}
