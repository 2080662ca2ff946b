import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP } from 'node:net';
import { Agent, fetch as undiciFetch } from 'undici';

/*
 * graft's one HTTP download: redirects followed by hand (http and https only, a bounded number),
 * a whole-request timeout, a byte cap checked against the Content-Length first and then while the
 * body streams in, and no address on this machine or its private network unless allowed: the
 * check is made on the address each connection really goes to (every redirect hop, every DNS
 * answer), not on the name. Model downloads and image downloads both go through it.
 */

/** Loopback, private, link-local (cloud metadata at 169.254.169.254), carrier-grade NAT, multicast and reserved ranges. */
const PRIVATE = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 3],
] as const)
  PRIVATE.addSubnet(net, bits, 'ipv4');
// IPv4-mapped IPv6 (::ffff:a.b.c.d) is judged as its IPv4 in isPrivateAddress (a ::ffff:0:0/96 rule here would match every IPv4).
for (const [net, bits] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
] as const)
  PRIVATE.addSubnet(net, bits, 'ipv6');

/** Whether an IP address is on this machine or a private network (IPv4-mapped IPv6 judged as its IPv4). */
export function isPrivateAddress(ip: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return PRIVATE.check(mapped[1], 'ipv4');
  const family = isIP(ip);
  if (family === 0) return true; // not an address: refuse rather than guess
  return PRIVATE.check(ip, family === 4 ? 'ipv4' : 'ipv6');
}

/** Resolves like dns.lookup, refusing private answers: what every public-only connection uses. */
function publicLookup(
  hostname: string,
  options: object,
  callback: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void,
): void {
  dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err) return callback(err, '');
    const list = addresses as LookupAddress[];
    const bad = list.find((a) => isPrivateAddress(a.address));
    if (bad) return callback(Object.assign(new Error(`${hostname} resolves to ${bad.address}, a private or local address`), { code: 'EPRIVATE' }), '');
    if ((options as { all?: boolean }).all) return callback(null, list);
    callback(null, list[0].address, list[0].family);
  });
}

/** Connections only to public addresses. */
const PUBLIC_ONLY = new Agent({ connect: { lookup: publicLookup as never } });
/** Connections anywhere (the operator allowed private hosts). */
const ANYWHERE = new Agent();

/** A URL as it may be shown or stored: its credentials replaced. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (!u.username && !u.password) return url;
    u.username = u.username ? '***' : '';
    u.password = u.password ? '***' : '';
    return u.toString();
  } catch {
    return hideUrlCredentials(url); // not a URL: hide what looks like credentials anyway
  }
}

/** A text (an error message, say) with the credentials of every URL in it replaced. */
export function hideUrlCredentials(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/)[^@\s/]*@/gi, '$1***@');
}

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
  /** Whether addresses on this machine or a private network may be fetched. Default false. */
  allowPrivateHosts?: boolean;
  /** How the caller allows private hosts, said when one is refused (a flag's name). Default: allow private hosts. */
  privateHint?: string;
}

export type FetchFailureKind = 'network' | 'timeout' | 'status' | 'too-large' | 'redirect' | 'private';

/** Why a download failed; `message` is the reason alone (callers add the URL and what it was for). */
export class FetchFailure extends Error {
  constructor(
    readonly kind: FetchFailureKind,
    message: string,
    /** Whether the same request may work if tried again (network errors, timeouts, 5xx and 429 answers). */
    readonly retry: boolean,
    /** The URL that failed (after redirects), credentials redacted. */
    readonly url: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.url = redactUrl(url);
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
  headers: { get(name: string): string | null };
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

type Answer = Awaited<ReturnType<typeof undiciFetch>>;

/** The response at the end of the redirects (its url set to where it came from). */
async function followRedirects(url: string, o: CappedFetchOptions): Promise<Answer> {
  let at = url;
  for (let hop = 0; ; hop++) {
    const target = new URL(at);
    if (target.protocol !== 'http:' && target.protocol !== 'https:')
      throw new FetchFailure('redirect', `${target.protocol} is not fetched (only http and https)`, false, at);
    // An address written in the URL is never looked up: judge it here.
    const literal = target.hostname.replace(/^\[|\]$/g, '');
    if (!o.allowPrivateHosts && isIP(literal) && isPrivateAddress(literal))
      throw new FetchFailure('private', `${literal} is a private or local address (${o.privateHint ?? 'allow private hosts'} to fetch it)`, false, at);
    let res: Answer;
    try {
      res = await undiciFetch(at, {
        headers: o.headers,
        signal: AbortSignal.timeout(o.timeoutMs),
        redirect: 'manual',
        dispatcher: o.allowPrivateHosts ? ANYWHERE : PUBLIC_ONLY,
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      if (cause?.code === 'EPRIVATE')
        throw new FetchFailure('private', `${cause.message} (${o.privateHint ?? 'allow private hosts'} to fetch it)`, false, at, { cause: err });
      throw networkFailure(err, at, o.timeoutMs);
    }
    if (res.status < 300 || res.status >= 400 || res.status === 304) return Object.defineProperty(res, 'url', { value: at });
    const next = res.headers.get('location');
    await res.body?.cancel().catch(() => undefined);
    if (!next) throw new FetchFailure('redirect', `HTTP ${res.status} without a Location`, false, at);
    const to = new URL(next, at);
    if (to.protocol !== 'http:' && to.protocol !== 'https:')
      throw new FetchFailure('redirect', `it redirects to ${to.protocol} (only http and https are followed)`, false, at);
    if (hop >= MAX_REDIRECTS) throw new FetchFailure('redirect', `more than ${MAX_REDIRECTS} redirects`, false, at);
    at = to.toString();
  }
}

function networkFailure(err: unknown, url: string, timeoutMs: number): FetchFailure {
  if ((err as Error).name === 'TimeoutError') return new FetchFailure('timeout', `no answer within ${timeoutMs} ms`, true, url, { cause: err });
  const cause = (err as { cause?: Error }).cause;
  // The client's message can quote the URL it was given, credentials and all.
  return new FetchFailure('network', hideUrlCredentials(cause?.message ?? (err as Error).message), true, url, { cause: err });
}
