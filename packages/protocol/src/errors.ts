import { JetStreamApiError } from '@nats-io/jetstream';

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

/** Whether a KV write failed because the key's revision was not the one named (someone else wrote it). */
export function isRevisionConflict(err: unknown): boolean {
  return (err instanceof JetStreamApiError && err.code === 10071) || /wrong last sequence|key exists/i.test((err as Error)?.message ?? '');
}
