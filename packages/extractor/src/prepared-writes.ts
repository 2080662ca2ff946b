import { putPrepared, type Bus } from '@graft/protocol';

/** Writes one worker keeps in flight before a new one waits for room. */
const MAX_IN_FLIGHT = 64;

/**
 * Stores prepared inputs in the background: a task's vectors never wait for the cache write (a
 * write lost to a kill costs only that copy, made again by the next task that needs it), and at most
 * MAX_IN_FLIGHT writes are in flight, so a slow store slows the worker down rather than filling its memory.
 */
export class PreparedWrites {
  private readonly inFlight = new Set<Promise<void>>();

  constructor(
    private readonly bus: Bus,
    /** The decode-and-resize rule the pixels were made by (part of each copy's key). */
    readonly rule: string,
    /** Counts each write's outcome: stored, or not (the task goes on either way). */
    private readonly count: (outcome: 'made' | 'failed') => void,
  ) {}

  /** Starts storing a photo's pixels at `size`; resolves once the write is under way (after waiting for room). */
  async write(size: number, sha256: string, pixels: Uint8Array): Promise<void> {
    while (this.inFlight.size >= MAX_IN_FLIGHT) await Promise.race(this.inFlight);
    const p: Promise<void> = putPrepared(this.bus, this.rule, size, sha256, pixels)
      .then(
        () => this.count('made'),
        () => this.count('failed'),
      )
      .finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
  }

  /** Waits for every write in flight (before the worker closes its bus). */
  async drain(): Promise<void> {
    await Promise.all([...this.inFlight]);
  }
}
