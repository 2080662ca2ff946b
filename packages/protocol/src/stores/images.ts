import { createHash } from 'node:crypto';
import { BUCKETS, BUCKET_STREAMS } from '../names.js';
import type { Bus } from '../bus.js';
import { isStoreFull, storeFullMessage } from '../policy/retry.js';

/*
 * The image store (graft-images): photo bytes (and the blobs of uploaded models) named by their hex SHA-256. This module is its only
 * reader and writer: uploads, checked reads, and whether an image is stored.
 */

/** The object store's stream and chunk subjects (its documented storage layout). */
const IMAGES_STREAM = BUCKET_STREAMS.images;
const chunkSubject = (nuid: string) => `$O.${BUCKETS.images}.C.${nuid}`;
/** Base64url with padding: how the object store writes names in subjects and digests. */
const paddedBase64Url = (bytes: Buffer) => bytes.toString('base64').replace(/\+/g, '-').replace(/\//g, '_');
const metaSubject = (name: string) => `$O.${BUCKETS.images}.M.${paddedBase64Url(Buffer.from(name))}`;

/** What reading one image gave: its bytes, or why there are none (each ends that image alone). */
export type ImageRead =
  | { ok: true; bytes: Uint8Array }
  | { ok: false; problem: 'missing' | 'too-large' | 'corrupt'; size: number; message: string };

/**
 * Reads an image's bytes from the image store, checked against its name (the hex SHA-256 of
 * the bytes), so nobody who can upload can pass one photo off as another.
 * - An image over `maxBytes` is refused from the store's object info, before any download.
 * - The info and every chunk are read with JetStream direct gets (raw bytes; a plain message get
 *   wraps them in base64 JSON, a third more bytes and a parse), never through the ordered consumer
 *   a generic object get creates: on the worker's hot path that consumer cost more bus time than
 *   the photo, and one left behind by a stalled read stayed. A photo in one chunk (up to 1 MiB
 *   with graft's server configs, most of them) costs two requests.
 * @throws Error only when the store cannot be read (the bus is down): the caller retries.
 */
export async function readImage(bus: Bus, sha256: string, maxBytes = Infinity): Promise<ImageRead> {
  const info = await readInfo(bus, sha256);
  if (!info || info.deleted) return { ok: false, problem: 'missing', size: 0, message: 'image is not in the image store' };
  if (info.size > maxBytes) return { ok: false, problem: 'too-large', size: info.size, message: `file is ${info.size} bytes, over the ${maxBytes}-byte limit` };
  if (info.size === 0) return { ok: true, bytes: new Uint8Array(0) };
  const data = info.chunks === 1 ? ((await budgeted(info.size, () => directGet(bus, { last_by_subj: chunkSubject(info.nuid) })))?.data ?? null) : await readChunks(bus, info);
  if (!data) return { ok: false, problem: 'missing', size: 0, message: 'image is not in the image store' };
  // One hash serves both checks (every image on the worker's hot path).
  const actual = createHash('sha256').update(data).digest('hex');
  if (info.chunks === 1 && actual !== shaOfDigest(info.digest)) {
    return { ok: false, problem: 'corrupt', size: info.size, message: 'image is corrupt in the store: its bytes do not match the stored digest' };
  }
  if (info.chunks > 1 && data.byteLength !== info.size) return { ok: false, problem: 'corrupt', size: info.size, message: `image is corrupt in the store: ${data.byteLength} bytes where its record says ${info.size}` };
  if (actual !== sha256) {
    return { ok: false, problem: 'corrupt', size: data.byteLength, message: 'image content does not match its name (SHA-256): the stored object was replaced with other bytes' };
  }
  return { ok: true, bytes: data };
}

/** The fields of an object's info record graft reads (the object store's documented JSON). */
interface ObjectRecord {
  nuid: string;
  size: number;
  chunks: number;
  digest: string;
  deleted?: boolean;
}

/** An object's info record, by a direct get of its meta subject, and the record's sequence; null when there is none. */
async function readInfo(bus: Bus, name: string): Promise<(ObjectRecord & { seq: number }) | null> {
  const m = await directGet(bus, { last_by_subj: metaSubject(name) });
  if (!m) return null;
  const r = JSON.parse(new TextDecoder().decode(m.data)) as Partial<ObjectRecord>;
  if (typeof r.nuid !== 'string' || !Number.isSafeInteger(r.size) || !Number.isSafeInteger(r.chunks) || typeof r.digest !== 'string') throw new Error(`the image store's record of ${name} is malformed`);
  return { ...(r as ObjectRecord), seq: m.seq };
}

/** Tries of one read that timed out (a busy or failing-over server) before the read fails. */
const READ_TRIES = 3;

/** One direct get with its own deadline (the bus's request timeout), tried again on a timeout; null: no such message. */
async function directGet(bus: Bus, query: { last_by_subj: string } | { seq: number; next_by_subj?: string }): Promise<{ data: Uint8Array; seq: number; subject: string } | null> {
  for (let attempt = 1; ; attempt++) {
    try {
      const m = await bus.jsm.direct.getMessage(IMAGES_STREAM, query);
      return m ? { data: m.data, seq: m.seq, subject: m.subject } : null;
    } catch (err) {
      if (attempt >= READ_TRIES || !/timeout|timed out/i.test((err as Error).message)) throw err;
    }
  }
}

/**
 * Bytes of image reads this process has asked for and not yet received. nats-server cuts off a
 * client with more than 64 MB waiting for it (a "slow consumer"), which a worker holding its event
 * loop in a backbone call can become when two tasks of 1 MiB chunks are being read: so reads wait
 * their turn past this.
 */
const READ_BUDGET_BYTES = 16 * 1024 * 1024;
let budgetLeft = READ_BUDGET_BYTES;
const budgetWaiters: (() => void)[] = [];

/** Runs a read of about `bytes` within the budget. */
async function budgeted<T>(bytes: number, read: () => Promise<T>): Promise<T> {
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

/**
 * An object's chunks by direct gets: no consumer is created, so nothing is left on the server
 * whatever happens to this process, and a stalled read costs one request's timeout, tried again,
 * not a whole task. An upload writes its chunks, then its record: uploaded alone, its chunks are
 * the `chunks` messages just before the record, so when the first is found there the rest are asked
 * for at once. Uploaded while another object was (their chunks interleaved), they are read by
 * subject, one after another. No chunk is read twice or in vain.
 * @returns the bytes, or null when a chunk is missing.
 */
async function readChunks(bus: Bus, info: ObjectRecord & { seq: number }): Promise<Uint8Array | null> {
  const subject = chunkSubject(info.nuid);
  const each = Math.ceil(info.size / info.chunks);
  const get = (query: { seq: number; next_by_subj?: string }) => budgeted(each, () => directGet(bus, query));
  const parts: Uint8Array[] = [];
  let seq = 0;
  while (parts.length < info.chunks) {
    // next_by_subj: the first message on the subject at or after seq (server 2.9+).
    const m = await get({ seq: seq + 1, next_by_subj: subject });
    if (!m) return null;
    parts.push(m.data);
    seq = m.seq;
    // The first chunk just where an object uploaded alone has it: every chunk follows it, and the rest
    // are asked for at once (all but a check of their subjects; otherwise one after another, as here).
    if (parts.length === 1 && info.chunks > 1 && m.seq === info.seq - info.chunks) {
      const rest = await Promise.all(Array.from({ length: info.chunks - 1 }, (_, k) => get({ seq: m.seq + 1 + k })));
      if (rest.every((r) => r?.subject === subject)) return Buffer.concat([m.data, ...rest.map((r) => r!.data)]);
    }
  }
  return Buffer.concat(parts);
}

/**
 * Uploads one image (its name is the hex SHA-256 of the bytes). A full image store is said plainly
 * (which store, how to make room), not as JetStream's error code.
 */
export async function putImage(bus: Bus, meta: { name: string; description: string }, bytes: Uint8Array): Promise<void> {
  try {
    await bus.images.putBlob({ ...meta, options: { max_chunk_size: chunkBytes(bus) } }, bytes);
  } catch (err) {
    if (isStoreFull(err)) throw new Error(`cannot upload ${meta.description}: ${storeFullMessage('images', BUCKETS.images)}`, { cause: err });
    throw err;
  }
}

/**
 * Chunk size of uploads: 1 MiB where the server takes messages of 2 MiB or more (graft's configs
 * allow 8 MB), else half its max_payload. A phone photo is then 4 messages instead of the object
 * store's default 25 of 128 KiB, and a reader spends a third of the CPU on them (BENCHMARKS.md).
 */
function chunkBytes(bus: Bus): number {
  const max = bus.nc.info?.max_payload ?? 1024 * 1024;
  return Math.max(64 * 1024, Math.min(1024 * 1024, Math.floor(max / 2)));
}

/** Whether the store holds these bytes (by name, size and digest): an object of that name holding other bytes is not them. */
export async function isImageStored(bus: Bus, sha256: string, size: number): Promise<boolean> {
  const info = await readInfo(bus, sha256);
  return Boolean(info && !info.deleted && info.size === size && info.digest === objectDigest(sha256));
}

/** Whether an object of this name is in the store at all (a manifest naming it can be served). */
export async function hasImage(bus: Bus, sha256: string): Promise<boolean> {
  const info = await readInfo(bus, sha256);
  return Boolean(info && !info.deleted);
}

/** The object store's digest of bytes whose hex SHA-256 is given ("SHA-256=" + padded base64url). */
function objectDigest(sha256Hex: string): string {
  return `SHA-256=${paddedBase64Url(Buffer.from(sha256Hex, 'hex'))}`;
}

/** The inverse of {@link objectDigest}: the hex SHA-256 an object's digest names. */
function shaOfDigest(digest: string): string {
  return Buffer.from(digest.replace(/^SHA-256=/, '').replace(/-/g, '+').replace(/_/g, '/'), 'base64').toString('hex');
}
