import { createHash } from 'node:crypto';
import { handles, type Bus } from '../bus.js';

/*
 * Reading JetStream messages by direct gets: raw bytes, no consumer made on the server (nothing a
 * reader can leave behind or a role must be allowed to create), a stalled read costing one request's
 * timeout, tried again, and the bytes in flight bounded per process. Shared by the stores that read
 * this way; each store module owns its own layout.
 */

/** Tries of one read that timed out (a busy or failing-over server) before the read fails. */
const READ_TRIES = 3;

/** A stored message as a direct get returns it. */
export interface DirectMessage {
  data: Uint8Array;
  seq: number;
  subject: string;
}

/** One direct get with its own deadline (the bus's request timeout), tried again on a timeout; null: no such message. */
export async function directGet(
  bus: Bus,
  stream: string,
  query: { last_by_subj: string } | { seq: number; next_by_subj?: string },
): Promise<DirectMessage | null> {
  for (let attempt = 1; ; attempt++) {
    try {
      const m = await handles(bus).jsm.direct.getMessage(stream, query);
      return m ? { data: m.data, seq: m.seq, subject: m.subject } : null;
    } catch (err) {
      if (attempt >= READ_TRIES || !/timeout|timed out/i.test((err as Error).message)) throw err;
    }
  }
}

/**
 * Bytes of reads this process has asked for and not yet received. nats-server cuts off a client
 * with more than 64 MB waiting for it (a "slow consumer"), which a worker busy in a backbone call
 * can become when two tasks of 1 MiB chunks are being read: so reads wait their turn past this.
 */
const READ_BUDGET_BYTES = 16 * 1024 * 1024;
let budgetLeft = READ_BUDGET_BYTES;
const budgetWaiters: (() => void)[] = [];

/** Runs a read of about `bytes` within the budget. */
export async function budgeted<T>(bytes: number, read: () => Promise<T>): Promise<T> {
  const n = Math.min(Math.max(bytes, 1), READ_BUDGET_BYTES);
  while (budgetLeft < n) await new Promise<void>((resolve) => budgetWaiters.push(resolve));
  budgetLeft -= n;
  try {
    return await read();
  } finally {
    budgetLeft += n;
    for (const wake of budgetWaiters.splice(0)) wake();
  }
}

// ---- object stores (graft-artifacts, graft-models), in their documented layout ----------------

/** Base64url with padding: how the object store writes names in subjects and digests. */
const paddedBase64Url = (bytes: Buffer) => bytes.toString('base64').replace(/\+/g, '-').replace(/\//g, '_');

/** The fields of an object's info record graft reads (the object store's documented JSON). */
export interface ObjectRecord {
  nuid: string;
  size: number;
  chunks: number;
  digest: string;
  deleted?: boolean;
  seq: number;
}

/** An object's info record, by a direct get of its meta subject; null when there is none. @throws Error when it is malformed. */
export async function readObjectInfo(bus: Bus, bucket: string, name: string): Promise<ObjectRecord | null> {
  const m = await directGet(bus, `OBJ_${bucket}`, { last_by_subj: `$O.${bucket}.M.${paddedBase64Url(Buffer.from(name))}` });
  if (!m) return null;
  const r = JSON.parse(new TextDecoder().decode(m.data)) as Partial<ObjectRecord>;
  if (typeof r.nuid !== 'string' || !Number.isSafeInteger(r.size) || !Number.isSafeInteger(r.chunks) || typeof r.digest !== 'string')
    throw new Error(`the ${bucket} store's record of ${name} is malformed`);
  return { ...(r as ObjectRecord), seq: m.seq };
}

/**
 * An object's bytes by direct gets, checked against its recorded size and digest: the object store's
 * own get makes a consumer per read, which a reader would need the right to create.
 * @returns undefined when there is no such object (or it was deleted).
 * @throws Error when its bytes do not match its record (a damaged store).
 */
export async function readObject(bus: Bus, bucket: string, name: string): Promise<Uint8Array | undefined> {
  const info = await readObjectInfo(bus, bucket, name);
  if (!info || info.deleted) return undefined;
  if (info.size === 0) return new Uint8Array(0);
  const data = await readObjectChunks(bus, bucket, info);
  if (!data || data.byteLength !== info.size || `SHA-256=${paddedBase64Url(createHash('sha256').update(data).digest())}` !== info.digest) {
    throw new Error(`the ${bucket} store's object ${name} is damaged: its bytes do not match its record`);
  }
  return data;
}

/**
 * An object's chunks by direct gets. An upload writes its chunks, then its record: uploaded alone,
 * its chunks are the `chunks` messages just before the record, so when the first is found there the
 * rest are asked for at once. Uploaded while another object was (their chunks interleaved), they are
 * read by subject, one after another. No chunk is read twice or in vain.
 * @returns the bytes, or null when a chunk is missing.
 */
async function readObjectChunks(bus: Bus, bucket: string, info: ObjectRecord): Promise<Uint8Array | null> {
  const stream = `OBJ_${bucket}`;
  const subject = `$O.${bucket}.C.${info.nuid}`;
  const each = Math.ceil(info.size / info.chunks);
  const get = (query: { seq: number; next_by_subj?: string }) => budgeted(each, () => directGet(bus, stream, query));
  const parts: Uint8Array[] = [];
  let seq = 0;
  while (parts.length < info.chunks) {
    // next_by_subj: the first message on the subject at or after seq (server 2.9+).
    const m = await get({ seq: seq + 1, next_by_subj: subject });
    if (!m) return null;
    parts.push(m.data);
    seq = m.seq;
    if (parts.length === 1 && info.chunks > 1 && m.seq === info.seq - info.chunks) {
      const rest = await Promise.all(Array.from({ length: info.chunks - 1 }, (_, k) => get({ seq: m.seq + 1 + k })));
      if (rest.every((r) => r?.subject === subject)) return Buffer.concat([m.data, ...rest.map((r) => r!.data)]);
    }
  }
  return Buffer.concat(parts);
}
