import { performance } from 'node:perf_hooks';
import { ErrorCode, readImage, readPrepared, type Bus, type ImageRead, type ImageVector } from '@graft/protocol';
import { ImageError, decodeAugmented, decodeImage, parseImageId, type DecodeLimits } from '@graft/vision';
import type { PreparedWrites } from './prepared-writes.js';

/** An image that ends without a vector: its sha, why, and a message naming the problem. */
export function failure(sha256: string, code: ErrorCode, message: string): ImageVector {
  return { sha256, errorCode: code, errorMessage: message };
}

const IMAGE_ERROR_CODES: Record<ImageError['code'], ErrorCode> = {
  EMPTY: ErrorCode.ERROR_CODE_EMPTY,
  DECODE_FAILED: ErrorCode.ERROR_CODE_DECODE_FAILED,
  TOO_LARGE: ErrorCode.ERROR_CODE_TOO_LARGE,
};

export interface PixelOptions {
  /** Square input edge of the backbone. */
  size: number;
  limits: Required<DecodeLimits>;
  /** An image still decoding after this fails with TIMEOUT, ms. */
  decodeTimeoutMs: number;
  /** Read prepared inputs (photos at `size` by its decode-and-resize rule) and store those made here; undefined: originals only. */
  prepared?: PreparedWrites;
}

/** Seconds spent fetching and decoding a task's images, bytes fetched, prepared inputs: filled in as each stage ends. */
export interface PixelTiming {
  fetchSeconds: number;
  decodeSeconds: number;
  /** Bytes read for the task's images: originals and prepared inputs. */
  fetchedBytes: number;
  /** Photos read as prepared inputs (no original fetched or decoded). */
  preparedReused: number;
  /** Prepared inputs refused as damaged (the original is read instead, and the copy made again). */
  preparedRefused: number;
}

/** A new, empty timing. */
export function newPixelTiming(): PixelTiming {
  return { fetchSeconds: 0, decodeSeconds: 0, fetchedBytes: 0, preparedReused: 0, preparedRefused: 0 };
}

const READ_PROBLEM_CODES = {
  missing: ErrorCode.ERROR_CODE_MISSING,
  'too-large': ErrorCode.ERROR_CODE_TOO_LARGE,
  corrupt: ErrorCode.ERROR_CODE_CORRUPT,
} as const;

type ParsedId = ReturnType<typeof parseImageId>;

/**
 * A task's images as size x size RGB pixels, or the failure that ends that image alone (missing,
 * over the byte limit, bytes not matching the name, empty, undecodable, over the pixel limit,
 * decode timeout). A photo wanted only at the input size is read from its prepared copy when one
 * exists; otherwise the original is fetched from the image store and decoded (on sharp's thread
 * pool), and its pixels stored (in the background) as the prepared copy for every later task when
 * that pays (worthPreparing).
 * @throws Error when the image store cannot be read at all (the bus is down): the task is retried.
 */
export async function fetchAndDecode(bus: Bus, ids: readonly string[], o: PixelOptions, timing: PixelTiming): Promise<(Uint8Array | ImageVector)[]> {
  const t0 = performance.now();
  // An id is a photo's SHA-256 or an augmented copy of it: each photo is fetched once per task.
  const parsed = ids.map((id) => parseImageId(id));
  const photos = [...new Set(parsed.filter((p) => p).map((p) => p!.sha256))];
  // Augmented copies cut windows from a larger resize: only photos wanted plain can use a prepared copy.
  const augmented = new Set(parsed.filter((p) => p?.augment).map((p) => p!.sha256));
  const plain = photos.filter((sha) => !augmented.has(sha));
  const prepared = o.prepared ? await readPreparedCopies(bus, o.prepared.rule, o.size, plain, timing) : new Map<string, Uint8Array>();
  const fetched = await fetchOriginals(
    bus,
    photos.filter((sha) => !prepared.has(sha)),
    o.limits.maxBytes,
  );
  const t1 = performance.now();
  timing.fetchSeconds = (t1 - t0) / 1000;
  for (const r of fetched.values()) if (r.ok) timing.fetchedBytes += r.bytes.byteLength;
  for (const px of prepared.values()) timing.fetchedBytes += px.byteLength;
  timing.preparedReused += prepared.size;
  const making = new Set<string>();
  const out = await Promise.all(
    ids.map(async (id, i): Promise<Uint8Array | ImageVector> => {
      const p = parsed[i];
      if (!p) return failure(id, ErrorCode.ERROR_CODE_DECODE_FAILED, 'not an image id (a SHA-256, or <sha256>_<augmentation>_<variant>)');
      const ready = prepared.get(p.sha256);
      if (ready && !p.augment) return ready;
      const read = fetched.get(p.sha256)!;
      const px = await decodeOne(id, p, read, o);
      if (o.prepared && !p.augment && px instanceof Uint8Array && read.ok && worthPreparing(read.bytes.byteLength, px.byteLength) && !making.has(p.sha256)) {
        making.add(p.sha256);
        await o.prepared.write(o.size, p.sha256, px);
      }
      return px;
    }),
  );
  timing.decodeSeconds = (performance.now() - t1) / 1000;
  return out;
}

/**
 * Whether a photo's prepared copy pays: only when its file is at least as large as the copy (its
 * pixels at the input size). A smaller original (a 27 KB, 400 x 533 JPEG against a 150 KB copy at 224
 * px) decodes in about what reading the copy costs, and writing copies cost its first job more CPU
 * (about 2.5 ms per photo, measured) than later jobs save; phone photos are where copies pay.
 */
export function worthPreparing(originalBytes: number, copyBytes: number): boolean {
  return originalBytes >= copyBytes;
}

/** The prepared copies that exist and check out; a missing or damaged one (counted) or a bus error leaves its photo to the original. */
async function readPreparedCopies(bus: Bus, rule: string, size: number, shas: readonly string[], timing: PixelTiming): Promise<Map<string, Uint8Array>> {
  const found = new Map<string, Uint8Array>();
  await Promise.all(
    shas.map(async (sha) => {
      const r = await readPrepared(bus, rule, size, sha).catch(() => undefined);
      if (r?.ok) found.set(sha, r.pixels);
      else if (r?.problem === 'damaged') timing.preparedRefused++;
    }),
  );
  return found;
}

/** Originals from the image store, each checked against its name. */
async function fetchOriginals(bus: Bus, shas: readonly string[], maxBytes: number): Promise<Map<string, ImageRead>> {
  return new Map(
    await Promise.all(
      shas.map(async (sha) => {
        try {
          return [sha, await readImage(bus, sha, maxBytes)] as const;
        } catch (err) {
          throw new Error(`cannot fetch image ${sha}: ${(err as Error).message}`, { cause: err });
        }
      }),
    ),
  );
}

/** One id's pixels from its original's bytes, or the failure that ends it. */
async function decodeOne(id: string, p: NonNullable<ParsedId>, read: ImageRead, o: PixelOptions): Promise<Uint8Array | ImageVector> {
  if (!read.ok) return failure(id, READ_PROBLEM_CODES[read.problem], read.message);
  try {
    const decoding = p.augment
      ? decodeAugmented(read.bytes, o.size, p.sha256, p.augment.spec, p.augment.variant, o.limits)
      : decodeImage(read.bytes, o.size, o.limits);
    return await withTimeout(decoding, o.decodeTimeoutMs, `decoding took over ${o.decodeTimeoutMs} ms`);
  } catch (err) {
    if (err instanceof ImageError) return failure(id, IMAGE_ERROR_CODES[err.code], err.message);
    if (err instanceof TimeoutError) return failure(id, ErrorCode.ERROR_CODE_TIMEOUT, err.message);
    return failure(id, ErrorCode.ERROR_CODE_DECODE_FAILED, (err as Error).message);
  }
}

class TimeoutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TimeoutError';
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([p, new Promise<T>((_, reject) => (t = setTimeout(() => reject(new TimeoutError(message)), ms)))]).finally(() => clearTimeout(t));
}
