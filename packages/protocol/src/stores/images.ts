import { createHash } from 'node:crypto';
import { handles, type Bus } from '../bus.js';
import { codecs } from '../messages.js';
import { STREAMS, imageSubjects } from '../names.js';
import { isStoreFull, storeFullMessage } from '../policy/retry.js';
import { budgeted, directGet } from './direct-reads.js';

/*
 * The image store (GRAFT_IMAGES): photo bytes (and the blobs of uploaded models) named by their hex
 * SHA-256, in graft's own layout on a plain stream: a photo's chunks on graft.images.<sha256>.<i>,
 * then its record (StoredImage) on graft.images.<sha256>.r. Each subject keeps its first message and
 * refuses later ones, and the stream allows no rollup: whoever may upload can add photos, never
 * replace, roll up or purge one (only the coordinator, which may purge, repairs a photo found
 * corrupt). Every read checks the bytes against the name. This module is its only reader and writer.
 */

/**
 * Bytes per chunk: 1,000 KiB fits the default max_payload (1 MiB) with headers to spare, so a phone
 * photo is 4 messages; a server that takes less gets chunks of its max_payload less 16 KiB. Fixed per
 * server, so an upload cut off and tried again writes the same chunks. A record says how many.
 */
export const IMAGE_CHUNK_BYTES = 1000 * 1024;

/** Smallest chunk a record may imply (a record asking for a million chunks of a byte is refused unread). */
const MIN_CHUNK_BYTES = 16 * 1024;

/** The chunk size uploads to this server use. */
function chunkBytes(bus: Bus): number {
  const max = handles(bus).nc.info?.max_payload ?? 1024 * 1024;
  return Math.max(MIN_CHUNK_BYTES, Math.min(IMAGE_CHUNK_BYTES, max - 16 * 1024));
}

/** What reading one image gave: its bytes, or why there are none (each ends that image alone). */
export type ImageRead = { ok: true; bytes: Uint8Array } | { ok: false; problem: 'missing' | 'too-large' | 'corrupt'; size: number; message: string };

/** A photo's record, checked against its name and the chunking rule; a string says what is wrong with it. */
async function readRecord(bus: Bus, sha256: string): Promise<{ size: number; chunks: number } | string | null> {
  const m = await directGet(bus, STREAMS.images, { last_by_subj: imageSubjects.record(sha256) });
  if (!m) return null;
  let r;
  try {
    r = codecs.storedImage.decode(m.data, `the image store's record of ${sha256}`);
  } catch {
    return 'its record in the image store is malformed';
  }
  const size = Number(r.size);
  if (Buffer.from(r.sha256).toString('hex') !== sha256) return 'its record in the image store names other bytes';
  if (!Number.isSafeInteger(size) || size < 0 || r.chunks < Math.ceil(size / IMAGE_CHUNK_BYTES) || r.chunks > Math.max(1, Math.ceil(size / MIN_CHUNK_BYTES)))
    return 'its record in the image store does not add up (size and chunks)';
  return { size, chunks: r.chunks };
}

/**
 * Reads an image's bytes from the image store, checked against its name (the hex SHA-256 of the
 * bytes), so nobody who can upload can pass one photo off as another. An image over `maxBytes` is
 * refused from its record, before any chunk is read. Every read is a direct get (no consumer): a
 * photo in one chunk costs two requests.
 * @throws Error only when the store cannot be read (the bus is down): the caller retries.
 */
export async function readImage(bus: Bus, sha256: string, maxBytes = Infinity): Promise<ImageRead> {
  const r = await readRecord(bus, sha256);
  if (r === null) return { ok: false, problem: 'missing', size: 0, message: 'image is not in the image store' };
  if (typeof r === 'string') return { ok: false, problem: 'corrupt', size: 0, message: `image is corrupt: ${r}` };
  if (r.size > maxBytes) return { ok: false, problem: 'too-large', size: r.size, message: `file is ${r.size} bytes, over the ${maxBytes}-byte limit` };
  const each = Math.ceil(r.size / Math.max(1, r.chunks));
  const parts = await Promise.all(
    Array.from({ length: r.chunks }, (_, i) => budgeted(each, () => directGet(bus, STREAMS.images, { last_by_subj: imageSubjects.chunk(sha256, i) }))),
  );
  if (parts.some((p) => !p))
    return { ok: false, problem: 'corrupt', size: r.size, message: 'image is corrupt in the store: a chunk its record names is missing' };
  const data = parts.length === 1 ? parts[0]!.data : Buffer.concat(parts.map((p) => p!.data));
  if (data.byteLength !== r.size || createHash('sha256').update(data).digest('hex') !== sha256) {
    return {
      ok: false,
      problem: 'corrupt',
      size: data.byteLength,
      message: 'image content does not match its name (SHA-256): the store holds other bytes under it',
    };
  }
  return { ok: true, bytes: data };
}

/** Publishes one message of a photo, kept once: the same subject written again is refused, which is fine. */
async function publishOnce(bus: Bus, subject: string, data: Uint8Array, description: string): Promise<void> {
  try {
    await handles(bus).js.publish(subject, data);
  } catch (err) {
    // Checked first: JetStream words a second message on a subject as a full store too.
    if (/maximum messages per subject/i.test((err as Error).message)) return;
    if (isStoreFull(err)) throw new Error(`cannot upload ${description}: ${storeFullMessage('images', STREAMS.images)}`, { cause: err });
    throw err;
  }
}

/**
 * Uploads one image (its name is the hex SHA-256 of the bytes): its chunks, then its record. What is
 * there already is left as it is (an upload cut off and tried again completes). A full image store
 * is said plainly (which store, how to make room), not as JetStream's error code.
 * @throws Error when the bytes are not the name's.
 */
export async function putImage(bus: Bus, meta: { name: string; description: string }, bytes: Uint8Array): Promise<void> {
  const digest = createHash('sha256').update(bytes).digest();
  if (digest.toString('hex') !== meta.name) throw new Error(`cannot upload ${meta.description}: its bytes are not ${meta.name}`);
  const each = chunkBytes(bus);
  const chunks = Math.ceil(bytes.byteLength / each);
  for (let i = 0; i < chunks; i++) await publishOnce(bus, imageSubjects.chunk(meta.name, i), bytes.subarray(i * each, (i + 1) * each), meta.description);
  await publishOnce(bus, imageSubjects.record(meta.name), codecs.storedImage.encode({ size: bytes.byteLength, chunks, sha256: digest }), meta.description);
}

/** Whether the store holds an image of this name and size with a sound record (its bytes are checked when read). */
export async function isImageStored(bus: Bus, sha256: string, size: number): Promise<boolean> {
  const r = await readRecord(bus, sha256);
  return typeof r === 'object' && r !== null && r.size === size;
}

/** Whether an image of this name has a record at all (a manifest naming it can be served). */
export async function hasImage(bus: Bus, sha256: string): Promise<boolean> {
  return (await readRecord(bus, sha256)) !== null;
}

/**
 * Removes a photo the store holds corrupt (chunks or record not its bytes), so that its owner can
 * upload it again: the coordinator's repair, the one writer allowed to purge.
 */
export async function removeCorruptImage(bus: Bus, sha256: string): Promise<void> {
  await handles(bus).jsm.streams.purge(STREAMS.images, { filter: imageSubjects.all(sha256) });
}
