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

/** What reading one image gave: its bytes, or why there are none (each ends that image alone). */
export type ImageRead =
  | { ok: true; bytes: Uint8Array }
  | { ok: false; problem: 'missing' | 'too-large' | 'corrupt'; size: number; message: string };

/**
 * Reads an image's bytes from the image store, checked against its name (the hex SHA-256 of
 * the bytes), so nobody who can upload can pass one photo off as another.
 * - An image over `maxBytes` is refused from the store's object info, before any download.
 * - Every chunk is read with a message get (one for a photo up to 128 KiB, most of them), never
 *   through the ordered consumer a generic object get creates: on the worker's hot path that
 *   consumer cost more bus time than the photo, and one left behind by a stalled read stayed.
 * @throws Error only when the store cannot be read (the bus is down): the caller retries.
 */
export async function readImage(bus: Bus, sha256: string, maxBytes = Infinity): Promise<ImageRead> {
  const info = await bus.images.info(sha256);
  if (!info || info.deleted) return { ok: false, problem: 'missing', size: 0, message: 'image is not in the image store' };
  if (info.size > maxBytes) return { ok: false, problem: 'too-large', size: info.size, message: `file is ${info.size} bytes, over the ${maxBytes}-byte limit` };
  if (info.size === 0) return { ok: true, bytes: new Uint8Array(0) };
  const data = info.chunks === 1 ? ((await bus.jsm.streams.getMessage(IMAGES_STREAM, { last_by_subj: chunkSubject(info.nuid) }))?.data ?? null) : await readChunks(bus, info.nuid, info.chunks);
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

/** Tries of one chunk read that timed out (a busy or failing-over server) before the read fails. */
const CHUNK_READ_TRIES = 3;

/**
 * An object's chunks, read one message get at a time (`next_by_subj` from the last one's sequence):
 * no consumer is created, so nothing is left on the server whatever happens to this process, and a
 * stalled read costs one request's timeout, tried again, not a whole task.
 * @returns the bytes, or null when a chunk is missing.
 */
async function readChunks(bus: Bus, nuid: string, chunks: number): Promise<Uint8Array | null> {
  const subject = chunkSubject(nuid);
  const parts: Uint8Array[] = [];
  let seq = 1;
  for (let i = 0; i < chunks; i++) {
    let m;
    for (let attempt = 1; ; attempt++) {
      try {
        // next_by_subj: the first message on the subject at or after seq (server 2.9+).
        m = await bus.jsm.streams.getMessage(IMAGES_STREAM, { seq, next_by_subj: subject } as unknown as { seq: number });
        break;
      } catch (err) {
        if (attempt >= CHUNK_READ_TRIES || !/timeout|timed out/i.test((err as Error).message)) throw err;
      }
    }
    if (!m) return null;
    parts.push(m.data);
    seq = m.seq + 1;
  }
  return Buffer.concat(parts);
}

/**
 * Uploads one image (its name is the hex SHA-256 of the bytes). A full image store is said plainly
 * (which store, how to make room), not as JetStream's error code.
 */
export async function putImage(bus: Bus, meta: { name: string; description: string }, bytes: Uint8Array): Promise<void> {
  try {
    await bus.images.putBlob(meta, bytes);
  } catch (err) {
    if (isStoreFull(err)) throw new Error(`cannot upload ${meta.description}: ${storeFullMessage('images', BUCKETS.images)}`, { cause: err });
    throw err;
  }
}

/** Whether the store holds these bytes (by name, size and digest): an object of that name holding other bytes is not them. */
export async function isImageStored(bus: Bus, sha256: string, size: number): Promise<boolean> {
  const info = await bus.images.info(sha256);
  return Boolean(info && !info.deleted && info.size === size && info.digest === objectDigest(sha256));
}

/** Whether an object of this name is in the store at all (a manifest naming it can be served). */
export async function hasImage(bus: Bus, sha256: string): Promise<boolean> {
  const info = await bus.images.info(sha256);
  return Boolean(info && !info.deleted);
}

/** The object store's digest of bytes whose hex SHA-256 is given ("SHA-256=" + padded base64url). */
function objectDigest(sha256Hex: string): string {
  return `SHA-256=${Buffer.from(sha256Hex, 'hex').toString('base64').replace(/\+/g, '-').replace(/\//g, '_')}`;
}

/** The inverse of {@link objectDigest}: the hex SHA-256 an object's digest names. */
function shaOfDigest(digest: string): string {
  return Buffer.from(digest.replace(/^SHA-256=/, '').replace(/-/g, '+').replace(/_/g, '/'), 'base64').toString('hex');
}
