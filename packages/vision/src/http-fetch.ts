/*
 * graft's one HTTP download: redirects followed by hand (http and https only, a bounded number),
 * a whole-request timeout, and a byte cap checked against the Content-Length first and then while
 * the body streams in. Model downloads and image downloads both go through it.
 */

/** Redirects followed per request. */
export const MAX_REDIRECTS = 5;

export interface CappedFetchOptions {
  /** Per request (each hop), ms. */
  timeoutMs: number;
  /** Largest body accepted, bytes. */
  maxBytes: number;
  /** The limit to name when the body is over maxBytes (a budget shared by several files names its whole). Default maxBytes. */
  limitBytes?: number;
  headers?: Record<string, string>;
  /** Whether a 304 Not Modified is an answer (conditional requests) rather than a failure. */
  notModifiedOk?: boolean;
}

export type FetchFailureKind = 'network' | 'timeout' | 'status' | 'too-large' | 'redirect';

/** Why a download failed; `message` is the reason alone (callers add the URL and what it was for). */
export class FetchFailure extends Error {
  constructor(
    readonly kind: FetchFailureKind,
    message: string,
    /** Whether the same request may work if tried again (network errors, timeouts, 5xx and 429 answers). */
    readonly retry: boolean,
    /** The URL that failed (after redirects). */
    readonly url: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'FetchFailure';
  }
}

export interface FetchedBody {
  /** 200..299, or 304 when notModifiedOk. */
  status: number;
  /** Empty for a 304. */
  bytes: Uint8Array;
  /** Where the body came from, after redirects. */
  url: string;
  headers: Headers;
}

/** Downloads one URL under the options' caps. @throws FetchFailure saying why. */
export async function fetchCapped(url: string, o: CappedFetchOptions): Promise<FetchedBody> {
  const res = await followRedirects(url, o);
  const at = res.url || url;
  if (res.status === 304 && o.notModifiedOk) {
    await res.body?.cancel().catch(() => undefined);
    return { status: 304, bytes: new Uint8Array(0), url: at, headers: res.headers };
  }
  if (!res.ok) {
    await res.body?.cancel().catch(() => undefined);
    throw new FetchFailure('status', `HTTP ${res.status} ${res.statusText}`.trim(), res.status >= 500 || res.status === 429, at);
  }
  const tooBig = () => new FetchFailure('too-large', `over the ${o.limitBytes ?? o.maxBytes}-byte limit`, false, at);
  if (Number(res.headers.get('content-length') ?? NaN) > o.maxBytes) {
    await res.body?.cancel().catch(() => undefined);
    throw tooBig();
  }
  const parts: Uint8Array[] = [];
  let got = 0;
  try {
    for await (const chunk of res.body ?? []) {
      got += (chunk as Uint8Array).byteLength;
      if (got > o.maxBytes) {
        await res.body?.cancel().catch(() => undefined);
        throw tooBig();
      }
      parts.push(chunk as Uint8Array);
    }
  } catch (err) {
    throw err instanceof FetchFailure ? err : networkFailure(err, at, o.timeoutMs);
  }
  return { status: res.status, bytes: new Uint8Array(Buffer.concat(parts)), url: at, headers: res.headers };
}

/** The response at the end of the redirects (its url set to where it came from). */
async function followRedirects(url: string, o: CappedFetchOptions): Promise<Response> {
  let at = url;
  for (let hop = 0; ; hop++) {
    let res: Response;
    try {
      res = await fetch(at, { headers: o.headers, signal: AbortSignal.timeout(o.timeoutMs), redirect: 'manual' });
    } catch (err) {
      throw networkFailure(err, at, o.timeoutMs);
    }
    if (res.status < 300 || res.status >= 400 || res.status === 304) return Object.defineProperty(res, 'url', { value: at });
    const next = res.headers.get('location');
    await res.body?.cancel().catch(() => undefined);
    if (!next) throw new FetchFailure('redirect', `HTTP ${res.status} without a Location`, false, at);
    const target = new URL(next, at);
    if (target.protocol !== 'http:' && target.protocol !== 'https:') throw new FetchFailure('redirect', `it redirects to ${target.protocol} (only http and https are followed)`, false, at);
    if (hop >= MAX_REDIRECTS) throw new FetchFailure('redirect', `more than ${MAX_REDIRECTS} redirects`, false, at);
    at = target.toString();
  }
}

function networkFailure(err: unknown, url: string, timeoutMs: number): FetchFailure {
  if ((err as Error).name === 'TimeoutError') return new FetchFailure('timeout', `no answer within ${timeoutMs} ms`, true, url, { cause: err });
  const cause = (err as { cause?: Error }).cause;
  return new FetchFailure('network', cause?.message ?? (err as Error).message, true, url, { cause: err });
}
