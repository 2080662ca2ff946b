/**
 * Runs fn on every item, at most `limit` at a time: a pool, so one slow item (a big photo, a slow
 * server) holds one slot rather than a whole batch. onDone hears each finished item.
 */
export async function inPool<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
  onDone?: (done: number, total: number) => void,
): Promise<void> {
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < items.length) {
      await fn(items[next++]);
      onDone?.(++done, items.length);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
}

/** How many reads of one store are in flight at once when a whole job is read (vectors, image checks). */
export const STORE_READ_CONCURRENCY = 64;
