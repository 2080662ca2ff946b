/*
 * Protocol's API with a bus's handles open (the connection, JetStream, the buckets): for graft's
 * tests and bench, which look inside the stores to check them. No package of graft imports it
 * (test/unit/architecture.test.ts): they hold a Bus and reach the stores through protocol.
 */
import { openBus as open, type BusHandles } from './bus.js';

export * from './index.js';
export { handles } from './bus.js';
export type { BusHandles } from './bus.js';

/** {@link open}, its bus typed with its handles. */
export const openBus = open as (...args: Parameters<typeof open>) => Promise<BusHandles>;
