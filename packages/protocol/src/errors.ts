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

/** Somebody else wrote a job record since it was read: the write was refused. */
export class JobRecordConflict extends Error {
  constructor(
    readonly jobId: string,
    options?: { cause?: unknown },
  ) {
    super(`job record ${jobId} was changed by another writer`, options);
    this.name = 'JobRecordConflict';
  }
}

/**
 * Whether a KV write failed because the key's revision was not the one named (someone else wrote it):
 * JetStream's error 10071, known by its code and words (no NATS module is loaded here).
 */
export function isRevisionConflict(err: unknown): boolean {
  const e = err as { name?: string; code?: number; message?: string } | undefined;
  return (e?.name === 'JetStreamApiError' && e.code === 10071) || /wrong last sequence|key exists/i.test(e?.message ?? '');
}
