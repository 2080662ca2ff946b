import { ErrorCode } from '../messages.js';
import { JobRecordConflict, ProtocolError, isRevisionConflict } from '../errors.js';

/**
 * graft's one retry policy: which failures are final and which are tried again, when, and how
 * often JetStream redelivers. The coordinator, the workers and the CLI ask here; nobody else decides.
 */

// ---- delivery defaults ------------------------------------------------------------------

/** How long a worker holds a task before it is redelivered, ms (workers renew it while busy). */
export const TASK_ACK_WAIT_MS = 30_000;
/** Deliveries of a task before JetStream gives up on it (its workers kept dying on it). */
export const TASK_MAX_DELIVER = 5;
/** A manifest is handled within this, or redelivered, ms (the coordinator renews it while busy). */
export const MANIFEST_ACK_WAIT_MS = 120_000;
/** Deliveries of a manifest before it is given up on. */
export const MANIFEST_MAX_DELIVER = 5;
/**
 * A vector batch is handled in milliseconds, so a dead coordinator's batches come back soon;
 * bounded deliveries, so no batch can come back forever (outages are waited out in place).
 */
export const RESULTS_ACK_WAIT_MS = 15_000;
export const RESULTS_MAX_DELIVER = 20;
/**
 * How long a worker's claim on a task lasts without renewal, ms. Workers renew it between backbone
 * calls; a claim of a worker that died ends by itself after this.
 */
export const TASK_CLAIM_TTL_MS = 60_000;

/**
 * A coordinator message (manifest, vector batch) whose handling failed for a reason outside
 * the message (the bus was down mid-handling): handed back and tried again after this long.
 * A message that cannot be decoded is never retried: it is dead-lettered.
 */
export const REDELIVERY_DELAY_MS = 2000;

// ---- what is final ----------------------------------------------------------------------

/**
 * Errors that depend only on an image's bytes: cached like vectors (once the coordinator has seen
 * the bytes fail too), never retried. TOO_LARGE is not one: it depends on the worker's limits.
 */
const CONTENT_ERRORS: ReadonlySet<ErrorCode> = new Set([ErrorCode.ERROR_CODE_EMPTY, ErrorCode.ERROR_CODE_DECODE_FAILED]);

/**
 * Whether an image's error is final for its content, so it is cached under the image's
 * vector key (a later job with the same bytes fails at once, with no worker call).
 * Other errors (missing, timeout, internal) belong to one attempt and are recorded on the job only.
 */
export function isContentError(code: ErrorCode | null | undefined): boolean {
  return code !== null && code !== undefined && CONTENT_ERRORS.has(code);
}

/**
 * Whether a JetStream write was refused because a stream, bucket or the account is at its storage
 * limit (the same next time: not an outage to wait out).
 */
export function isStoreFull(err: unknown): boolean {
  return causes(err).some((e) => /maximum (bytes|messages)|insufficient (storage|resources)|resource limits exceeded/i.test(e.message ?? ''));
}

/** What to tell a user when a store is full: which one, and how to make room. */
export function storeFullMessage(store: string, bucket: string): string {
  return `the ${store} store (${bucket}) is full: raise its limit with graft init --max-bytes ${store}=SIZE, or free space on the NATS server`;
}

/**
 * Whether a failure says the bus is unreachable or busy rather than that the operation is wrong:
 * the client's connection and timeout errors, a JetStream that has no responders or answers 503
 * (restarting, electing a leader), and a publish whose acknowledgement never came. A full store,
 * a message over max_payload, a lost revision race and a malformed message are never transient.
 */
export function isTransient(err: unknown): boolean {
  if (err instanceof JobRecordConflict || err instanceof ProtocolError || isRevisionConflict(err)) return false;
  if (isStoreFull(err) || /maximum payload|max_payload/i.test((err as Error)?.message ?? '')) return false;
  return causes(err).some(
    (e) =>
      ['TimeoutError', 'NoRespondersError', 'ConnectionError', 'ClosedConnectionError', 'DrainingConnectionError', 'RequestError'].includes(e.name ?? '') ||
      e.status === 503 ||
      /timeout|timed out|no responders|disconnect|connection (closed|refused|lost)|temporarily unavailable|not (yet )?available|leader|503/i.test(
        e.message ?? '',
      ),
  );
}

/** An error and up to three of its causes. */
function causes(err: unknown): { name?: string; message?: string; status?: number }[] {
  const out: { name?: string; message?: string; status?: number }[] = [];
  for (
    let e = err as { name?: string; message?: string; cause?: unknown; status?: number } | undefined, depth = 0;
    e && depth < 4;
    e = e.cause as typeof e, depth++
  )
    out.push(e);
  return out;
}

// ---- when to try again -------------------------------------------------------------------

/** Exponential backoff: `firstMs` doubling per attempt (1-based), at most `maxMs`. */
export function backoffMs(attempt: number, firstMs: number, maxMs: number): number {
  return Math.min(maxMs, firstMs * 2 ** Math.min(Math.max(0, attempt - 1), 30));
}

/** A bus operation through an outage: 0.25 s doubling to 5 s, for as long as the caller keeps trying. */
export const outageDelayMs = (attempt: number): number => backoffMs(attempt, 250, 5000);

/** A full task queue (discard new): 0.1 s more per attempt, at most 5 s, until workers make room. */
export const queueFullDelayMs = (attempt: number): number => Math.min(5000, 100 * attempt);

/** An image download that failed on the network or with a 5xx: 0.5 s, 1 s, 2 s... */
export const downloadRetryDelayMs = (attempt: number): number => backoffMs(attempt, 500, 30_000);

/** Tries of one image download (network errors, 5xx and 429 answers). */
export const DOWNLOAD_ATTEMPTS = 3;

/** A worker's answer that the bus did not take (publish, claim mark, ack): tried again after this, ms. */
export const WORKER_RETRY_MS = 500;

/** A failed task whose failure report could not be published: redelivered after this, ms. */
export const UNREPORTED_FAILURE_DELAY_MS = 5000;

/** Opening a bus that is not up yet (or whose topology is not made yet): every 2 s, 150 times (5 minutes). */
export const OPEN_RETRY = { delayMs: 2000, attempts: 150 } as const;

/** What to do with a message whose handling failed as a whole. */
export type FailureAction = { retry: true; delayMs: number } | { retry: false };

/**
 * A task that failed as a whole (fetch, backbone): retried with exponential backoff
 * (1 s, 2 s, 4 s ... at most 30 s) until its last delivery, which answers every image with
 * the error instead, so the job ends.
 * @param delivery this delivery's number, 1-based.
 * @param maxDeliver the consumer's MaxDeliver.
 */
export function taskFailureAction(delivery: number, maxDeliver: number): FailureAction {
  if (delivery >= maxDeliver) return { retry: false };
  return { retry: true, delayMs: backoffMs(delivery, 1000, 30_000) };
}

/**
 * Whether opening a bus failed only because it is not ready yet: the server is not up, a JetStream
 * cluster has not elected a leader, or (opening without creating) the topology is not made yet.
 */
export function isBusNotReady(err: unknown, creating: boolean): boolean {
  if (!creating && causes(err).some((e) => /does not exist/.test(e.message ?? ''))) return true;
  return isTransient(err);
}
