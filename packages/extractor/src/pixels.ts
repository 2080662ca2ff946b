import { performance } from 'node:perf_hooks';
import { ErrorCode, readImage, type Bus, type ImageVector } from '@graft/protocol';
import { ImageError, decodeAugmented, decodeImage, parseImageId, type DecodeLimits } from '@graft/vision';

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
}

/** Seconds spent fetching and decoding a task's images, and bytes fetched: filled in as each stage ends. */
export interface PixelTiming {
  fetchSeconds: number;
  decodeSeconds: number;
  fetchedBytes: number;
}

const READ_PROBLEM_CODES = {
  missing: ErrorCode.ERROR_CODE_MISSING,
  'too-large': ErrorCode.ERROR_CODE_TOO_LARGE,
  corrupt: ErrorCode.ERROR_CODE_CORRUPT,
} as const;

/**
 * Fetches a task's images from the image store and decodes them (on sharp's thread pool),
 * each to size x size RGB pixels, or to the failure that ends that image alone (missing,
 * over the byte limit, bytes not matching the name, empty, undecodable, over the pixel limit,
 * decode timeout).
 * @throws Error when the store cannot be read at all (the bus is down): the task is retried.
 */
export async function fetchAndDecode(bus: Bus, ids: readonly string[], o: PixelOptions, timing: PixelTiming): Promise<(Uint8Array | ImageVector)[]> {
  const t0 = performance.now();
  // An id is a photo's SHA-256 or an augmented copy of it: each photo is fetched once per task.
  const parsed = ids.map((id) => parseImageId(id));
  const photos = [...new Set(parsed.filter((p) => p).map((p) => p!.sha256))];
  const fetched = new Map(
    await Promise.all(
      photos.map(async (sha) => {
        try {
          return [sha, await readImage(bus, sha, o.limits.maxBytes)] as const;
        } catch (err) {
          throw new Error(`cannot fetch image ${sha}: ${(err as Error).message}`, { cause: err });
        }
      }),
    ),
  );
  const t1 = performance.now();
  timing.fetchSeconds = (t1 - t0) / 1000;
  for (const r of fetched.values()) if (r.ok) timing.fetchedBytes += r.bytes.byteLength;
  const out = await Promise.all(
    ids.map(async (sha, i): Promise<Uint8Array | ImageVector> => {
      const id = parsed[i];
      if (!id) return failure(sha, ErrorCode.ERROR_CODE_DECODE_FAILED, 'not an image id (a SHA-256, or <sha256>_<augmentation>_<variant>)');
      const read = fetched.get(id.sha256)!;
      if (!read.ok) return failure(sha, READ_PROBLEM_CODES[read.problem], read.message);
      try {
        const decoding = id.augment ? decodeAugmented(read.bytes, o.size, id.sha256, id.augment.spec, id.augment.variant, o.limits) : decodeImage(read.bytes, o.size, o.limits);
        return await withTimeout(decoding, o.decodeTimeoutMs, `decoding took over ${o.decodeTimeoutMs} ms`);
      } catch (err) {
        if (err instanceof ImageError) return failure(sha, IMAGE_ERROR_CODES[err.code], err.message);
        if (err instanceof TimeoutError) return failure(sha, ErrorCode.ERROR_CODE_TIMEOUT, err.message);
        return failure(sha, ErrorCode.ERROR_CODE_DECODE_FAILED, (err as Error).message);
      }
    }),
  );
  timing.decodeSeconds = (performance.now() - t1) / 1000;
  return out;
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
