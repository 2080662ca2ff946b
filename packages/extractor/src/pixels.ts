import { performance } from 'node:perf_hooks';
import { ErrorCode, readImage, type Bus, type ImageVector } from '@graft/protocol';
import { ImageError, decodeImage, type DecodeLimits } from '@graft/vision';

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
export async function fetchAndDecode(bus: Bus, shas: readonly string[], o: PixelOptions, timing: PixelTiming): Promise<(Uint8Array | ImageVector)[]> {
  const t0 = performance.now();
  const reads = await Promise.all(
    shas.map(async (sha) => {
      try {
        return await readImage(bus, sha, o.limits.maxBytes);
      } catch (err) {
        throw new Error(`cannot fetch image ${sha}: ${(err as Error).message}`, { cause: err });
      }
    }),
  );
  const t1 = performance.now();
  timing.fetchSeconds = (t1 - t0) / 1000;
  const out = await Promise.all(
    reads.map(async (read, i): Promise<Uint8Array | ImageVector> => {
      const sha = shas[i];
      if (!read.ok) return failure(sha, READ_PROBLEM_CODES[read.problem], read.message);
      timing.fetchedBytes += read.bytes.byteLength;
      try {
        return await withTimeout(decodeImage(read.bytes, o.size, o.limits), o.decodeTimeoutMs, `decoding took over ${o.decodeTimeoutMs} ms`);
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
