import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { DOWNLOAD_ATTEMPTS, downloadRetryDelayMs, inPool, isImageStored, putImage, type Bus } from '@graft/protocol';
import { FetchFailure, fetchCapped, hideUrlCredentials } from '@graft/vision';

/**
 * Downloading the images a list names by URL, into the image store: concurrent and bounded,
 * retried, size-capped, and remembered (URL, ETag, Last-Modified -> SHA-256) so publishing the
 * same list again downloads nothing the server says is unchanged.
 */

export interface DownloadOptions {
  /** Downloads at once. Default 8. */
  concurrency?: number;
  /** Tries per URL on network errors and 5xx answers. Default DOWNLOAD_ATTEMPTS (3). */
  attempts?: number;
  /** Largest image accepted, bytes. Default 50 MiB. */
  maxBytes?: number;
  /** Per request, ms. Default 30000. */
  timeoutMs?: number;
  /** JSON file remembering what each URL held. */
  cacheFile?: string;
  /** Whether URLs on this machine or a private network may be downloaded. Default false. */
  allowPrivateHosts?: boolean;
  onProgress?: (done: number, total: number) => void;
}

export interface DownloadResult {
  /** The image's content hash and size, for each URL that worked. */
  stored: Map<string, { sha256: string; size: number }>;
  /** Why each URL that did not work failed. */
  failed: Map<string, string>;
  /** Bodies downloaded (a 304 Not Modified is not one). */
  downloaded: number;
  /** Images put in the store (the others were there already). */
  uploaded: number;
}

interface Remembered {
  etag?: string;
  lastModified?: string;
  sha256: string;
  size: number;
}

/** Downloads each URL once, stores what is new, and says what failed (the rest goes on). */
export async function downloadImages(bus: Bus, urls: readonly string[], o: DownloadOptions = {}): Promise<DownloadResult> {
  const cache = await readCache(o.cacheFile);
  const result: DownloadResult = { stored: new Map(), failed: new Map(), downloaded: 0, uploaded: 0 };
  const unique = [...new Set(urls)];
  await inPool(
    unique,
    o.concurrency ?? 8,
    async (url) => {
      try {
        result.stored.set(url, await fetchOne(bus, url, cache, result, o));
      } catch (err) {
        result.failed.set(
          url,
          err instanceof FetchFailure && err.kind === 'network' ? `cannot download: ${err.message}` : hideUrlCredentials((err as Error).message),
        );
      }
    },
    o.onProgress,
  );
  await writeCache(o.cacheFile, cache);
  return result;
}

async function fetchOne(
  bus: Bus,
  url: string,
  cache: Map<string, Remembered>,
  result: DownloadResult,
  o: DownloadOptions,
): Promise<{ sha256: string; size: number }> {
  const known = cache.get(urlKey(url));
  // Ask the server only "has it changed?" when the store still holds what it gave last time.
  const conditional = known && (known.etag || known.lastModified) && (await isImageStored(bus, known.sha256, known.size)) ? known : undefined;
  const attempts = o.attempts ?? DOWNLOAD_ATTEMPTS;
  for (let attempt = 1; ; attempt++) {
    try {
      const got = await get(url, conditional, o);
      if (got === 'not-modified') return { sha256: conditional!.sha256, size: conditional!.size };
      result.downloaded++;
      const sha256 = createHash('sha256').update(got.bytes).digest('hex');
      if (!(await isImageStored(bus, sha256, got.bytes.byteLength))) {
        await putImage(bus, { name: sha256, description: url.slice(0, 200) }, got.bytes);
        result.uploaded++;
      }
      cache.set(urlKey(url), { etag: got.etag, lastModified: got.lastModified, sha256, size: got.bytes.byteLength });
      return { sha256, size: got.bytes.byteLength };
    } catch (err) {
      if (!(err instanceof FetchFailure && err.retry) || attempt >= attempts) throw err;
      await new Promise((r) => setTimeout(r, downloadRetryDelayMs(attempt)));
    }
  }
}

async function get(
  url: string,
  known: Remembered | undefined,
  o: DownloadOptions,
): Promise<'not-modified' | { bytes: Uint8Array; etag?: string; lastModified?: string }> {
  const headers: Record<string, string> = {};
  if (known?.etag) headers['if-none-match'] = known.etag;
  if (known?.lastModified) headers['if-modified-since'] = known.lastModified;
  const got = await fetchCapped(url, {
    headers,
    timeoutMs: o.timeoutMs ?? 30_000,
    maxBytes: o.maxBytes ?? 50 * 1024 * 1024,
    notModifiedOk: Boolean(known),
    allowPrivateHosts: o.allowPrivateHosts ?? false,
    privateHint: 'pass --allow-private-urls',
  });
  if (got.status === 304) return 'not-modified';
  return { bytes: got.bytes, etag: got.headers.get('etag') ?? undefined, lastModified: got.headers.get('last-modified') ?? undefined };
}

/** A URL as the cache file keys it: hashed, so the file never holds a URL's credentials. */
function urlKey(url: string): string {
  return createHash('sha256').update(url).digest('hex');
}

async function readCache(file: string | undefined): Promise<Map<string, Remembered>> {
  if (!file) return new Map();
  try {
    return new Map(Object.entries(JSON.parse(await readFile(file, 'utf8')) as Record<string, Remembered>));
  } catch {
    return new Map(); // none yet, or unreadable: safe, downloads then decide by content
  }
}

async function writeCache(file: string | undefined, cache: Map<string, Remembered>): Promise<void> {
  if (!file) return;
  await mkdir(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(Object.fromEntries(cache)));
  await rename(tmp, file);
}
