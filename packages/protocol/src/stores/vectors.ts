import { handles, type Bus, type BusHandles } from '../bus.js';
import { codecs, VectorDType, type CachedVector } from '../messages.js';
import { AckPolicy, DeliverPolicy } from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import { BUCKETS, BUCKET_STREAMS, kvKeyLocation, vectorKey, vectorKeyPrefix } from '../names.js';
import { inPool, STORE_READ_CONCURRENCY } from '../pool.js';
import { decodeHalf, encodeHalf } from '../half.js';

/*
 * The vector cache (graft-vectors): one CachedVector (a vector, or the final error of an image's
 * content) per backbone fingerprint and image id. This module is its only reader and writer, and
 * owns the key and the bytes of a vector on the wire.
 */

/** Longest error message cached with an image (an error entry then stays far smaller than any vector of a real backbone). */
const CACHED_MESSAGE_CHARS = 300;

/** Caches an image's answer under its backbone. @throws as JetStream (isStoreFull when the cache is full). */
export async function cacheVector(bus: Bus, fingerprint: string, imageId: string, entry: Parameters<typeof codecs.cachedVector.encode>[0]): Promise<void> {
  const e =
    entry.errorMessage && entry.errorMessage.length > CACHED_MESSAGE_CHARS
      ? { ...entry, errorMessage: entry.errorMessage.slice(0, CACHED_MESSAGE_CHARS) }
      : entry;
  await handles(bus).vectors.put(vectorKey(fingerprint, imageId), codecs.cachedVector.encode(e));
}

/**
 * An image's cached answer, or undefined when there is none.
 * @throws ProtocolError when the stored bytes are not a CachedVector.
 */
export async function readCachedVector(bus: Bus, fingerprint: string, imageId: string): Promise<CachedVector | undefined> {
  const e = await handles(bus).vectors.get(vectorKey(fingerprint, imageId));
  if (!e || e.length === 0 || e.operation !== 'PUT') return undefined;
  return codecs.cachedVector.decode(e.value, `cached vector ${imageId}`);
}

/**
 * Reads the cached answers of many images, a bounded number at a time, calling `each` with every
 * one (undefined: not cached).
 */
export async function readCachedVectors(
  bus: Bus,
  fingerprint: string,
  imageIds: readonly string[],
  each: (imageId: string, entry: CachedVector | undefined) => void,
): Promise<void> {
  await inPool(imageIds, STORE_READ_CONCURRENCY, async (id) => each(id, await readCachedVector(bus, fingerprint, id)));
}

/** What the cache says of an image without its vector: none, a vector (errorCode 0), or a final error. */
export type CacheAnswer = Pick<CachedVector, 'errorCode' | 'errorMessage'> | undefined;

/** From this many images on, {@link scanCachedVectors} lists the backbone's keys instead of reading each entry. */
const LIST_FROM = 1000;

/** A listing of the cache that receives nothing for this long has stalled. */
const LIST_STALL_MS = 15_000;

/**
 * What the cache holds for each of these images, without reading the vectors themselves: the
 * backbone's entries are listed headers-only (each key and its size) and only entries too small to
 * be a vector of `dim` floats are read (the errors). What a coordinator taking over a job of a
 * million photos reads is then their keys, not gigabytes of vectors. Small sets, small backbones
 * (where an error can be as large as a vector) and a cache holding many more of the backbone's
 * entries than asked for are read entry by entry.
 */
export async function scanCachedVectors(
  bus: Bus,
  fingerprint: string,
  imageIds: readonly string[],
  dim: number,
  each: (imageId: string, answer: CacheAnswer) => void,
  stallMs = LIST_STALL_MS,
): Promise<void> {
  // float16 is the smallest a vector travels as; an error entry is a code and at most CACHED_MESSAGE_CHARS characters.
  const minVectorBytes = 2 * dim;
  if (imageIds.length < LIST_FROM || minVectorBytes <= 4 * CACHED_MESSAGE_CHARS + 16) return readCachedVectors(bus, fingerprint, imageIds, each);
  const sizes = await listEntrySizes(bus, fingerprint, 4 * imageIds.length, stallMs);
  if (!sizes) return readCachedVectors(bus, fingerprint, imageIds, each);
  const small: string[] = [];
  for (const id of imageIds) {
    const size = sizes.get(id);
    if (size === undefined) each(id, undefined);
    else if (size >= minVectorBytes) each(id, { errorCode: 0, errorMessage: '' });
    else small.push(id);
  }
  await readCachedVectors(bus, fingerprint, small, each);
}

/**
 * The size of every entry under a backbone (the last of each key, deletes left out), from a
 * headers-only consumer; undefined when there are more than `most` (reading the entries asked for is then cheaper).
 */
async function listEntrySizes(bus: Bus, fingerprint: string, most: number, stallMs: number): Promise<Map<string, number> | undefined> {
  const prefix = kvKeyLocation(BUCKETS.vectors, vectorKeyPrefix(fingerprint)).subject;
  const oc = await handles(bus).js.consumers.getPushConsumer(BUCKET_STREAMS.vectors, {
    filter_subject: `${prefix}*`,
    deliver_policy: DeliverPolicy.LastPerSubject,
    ack_policy: AckPolicy.None,
    headers_only: true,
    flow_control: true,
    idle_heartbeat: nanos(5000),
  } as unknown as Parameters<BusHandles['js']['consumers']['getPushConsumer']>[1]);
  const sizes = new Map<string, number>();
  const total = (await oc.info()).num_pending;
  if (total === 0 || total > most) {
    await oc.delete().catch(() => undefined);
    return total === 0 ? sizes : undefined;
  }
  const msgs = await oc.consume();
  // Its own deadline: a listing that stops receiving (a broker stopped, a lost flow-control reply)
  // ends in a timeout the caller tries again, not in a coordinator waiting for ever.
  let last = Date.now();
  let stalled = false;
  let complete = false;
  const watch = setInterval(
    () => {
      if (Date.now() - last < stallMs) return;
      stalled = true;
      void msgs.close();
    },
    Math.min(1000, stallMs),
  );
  try {
    for await (const m of msgs) {
      last = Date.now();
      const op = m.headers?.get('KV-Operation');
      if (op !== 'DEL' && op !== 'PURGE') sizes.set(m.subject.slice(prefix.length), Number(m.headers?.get('Nats-Msg-Size') ?? m.data.length));
      if (m.info.pending === 0) {
        complete = true;
        break;
      }
    }
  } finally {
    clearInterval(watch);
  }
  if (!complete) {
    void oc.delete().catch(() => undefined);
    const err = new Error(
      stalled
        ? `listing the vector cache of ${fingerprint} timed out: no entry for ${stallMs / 1000} s (${sizes.size} of ${total} listed)`
        : `listing the vector cache of ${fingerprint} ended after ${sizes.size} of ${total} entries`,
    );
    err.name = 'TimeoutError'; // tried again through the outage policy
    throw err;
  }
  await msgs.close();
  return sizes;
}

/** A cached answer's vector as floats, or undefined when the image failed. */
export function vectorOf(entry: CachedVector | undefined): Float32Array | undefined {
  if (!entry || entry.errorCode) return undefined;
  return decodeVector(entry.vector, entry.dim, entry.dtype);
}

/** A cached answer's vector as half-float bits (half the memory of floats), or undefined when the image failed. */
export function halfVectorOf(entry: CachedVector | undefined): Uint16Array | undefined {
  if (!entry || entry.errorCode) return undefined;
  if (entry.dtype !== VectorDType.VECTOR_DTYPE_FLOAT16) return encodeHalf(decodeVector(entry.vector, entry.dim, entry.dtype));
  return new Uint16Array(alignedVector(entry.vector, entry.dim, entry.dtype));
}

/**
 * Whether the cache holds an answer (vector or final failure) for every one of these images. By a
 * get of each key (a worker may read a key it knows, which it could compute itself), not by stream
 * info: a subject filter there would list every key in the cache.
 * @throws when the bus cannot answer.
 */
export async function hasCachedVectors(bus: Bus, fingerprint: string, imageIds: readonly string[]): Promise<boolean> {
  for (const id of imageIds) {
    const { stream, subject } = kvKeyLocation(BUCKETS.vectors, vectorKey(fingerprint, id));
    const m = await handles(bus).jsm.streams.getMessage(stream, { last_by_subj: subject });
    if (!m || (m.header?.get('KV-Operation') ?? '') !== '') return false;
  }
  return true;
}

/** Whether the cache is within one more vector of its byte cap (a write refused as full will be refused again). */
export async function isVectorCacheFull(bus: Bus): Promise<boolean> {
  const i = await handles(bus).jsm.streams.info(BUCKET_STREAMS.vectors);
  return i.config.max_bytes > 0 && i.state.bytes + 4096 > i.config.max_bytes;
}

/**
 * Vector bytes on the wire: little-endian float32, or IEEE 754 half floats
 * (half the bytes; rounding error ~1e-3 relative, far below what a softmax head notices).
 */
export function encodeVector(v: Float32Array, dtype: VectorDType): Uint8Array {
  if (dtype === VectorDType.VECTOR_DTYPE_FLOAT16) {
    return new Uint8Array(encodeHalf(v).buffer);
  }
  const copy = new Float32Array(v);
  return new Uint8Array(copy.buffer);
}

/** @throws RangeError when the byte length does not match dim and dtype. */
export function decodeVector(bytes: Uint8Array, dim: number, dtype: VectorDType): Float32Array {
  const aligned = alignedVector(bytes, dim, dtype);
  return dtype === VectorDType.VECTOR_DTYPE_FLOAT16 ? decodeHalf(new Uint16Array(aligned)) : new Float32Array(aligned);
}

/**
 * A vector's bytes copied to an aligned buffer (protobuf byte fields are views at arbitrary offsets).
 * @throws RangeError when the byte length does not match dim and dtype.
 */
function alignedVector(bytes: Uint8Array, dim: number, dtype: VectorDType): ArrayBuffer {
  const width = dtype === VectorDType.VECTOR_DTYPE_FLOAT16 ? 2 : 4;
  if (bytes.byteLength !== dim * width) throw new RangeError(`vector has ${bytes.byteLength} bytes, expected ${dim * width} for dim ${dim}`);
  return new Uint8Array(bytes).buffer;
}
