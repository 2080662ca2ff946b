/** A message on a graft subject that is not the protobuf it should be. */
export class ProtocolError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ProtocolError';
  }
}

/** The bus could not be reached or set up. */
export class BusError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BusError';
  }
}

/**
 * Whether a JetStream write was refused because a stream, bucket or the account is at its storage
 * limit (the same next time: not an outage to wait out).
 */
export function isStoreFull(err: unknown): boolean {
  for (let e = err as { message?: string; cause?: unknown } | undefined, depth = 0; e && depth < 4; e = e.cause as typeof e, depth++) {
    if (/maximum (bytes|messages)|insufficient (storage|resources)|resource limits exceeded/i.test(e.message ?? '')) return true;
  }
  return false;
}

/** What to tell a user when a store is full: which one, and how to make room. */
export function storeFullMessage(store: string, bucket: string): string {
  return `the ${store} store (${bucket}) is full: raise its limit with graft init --max-bytes ${store}=SIZE, or free space on the NATS server`;
}
