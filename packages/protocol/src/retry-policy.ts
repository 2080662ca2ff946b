import { ErrorCode } from './messages.js';

/**
 * graft's one retry policy: which failures are final and which are tried again, and when.
 * Workers and the coordinator ask here; nobody else decides.
 */

/** Errors that depend only on an image's bytes: cached like vectors, never retried. */
const CONTENT_ERRORS: ReadonlySet<ErrorCode> = new Set([ErrorCode.ERROR_CODE_EMPTY, ErrorCode.ERROR_CODE_DECODE_FAILED, ErrorCode.ERROR_CODE_TOO_LARGE]);

/**
 * Whether an image's error is final for its content, so it is cached under the image's
 * vector key (a later job with the same bytes fails at once, with no worker call).
 * Other errors (missing, timeout, internal) belong to one attempt and are recorded on the job only.
 */
export function isContentError(code: ErrorCode | null | undefined): boolean {
  return code !== null && code !== undefined && CONTENT_ERRORS.has(code);
}

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
  return { retry: true, delayMs: Math.min(30_000, 1000 * 2 ** Math.max(0, delivery - 1)) };
}

/**
 * A coordinator message (manifest, vector batch) whose handling failed for a reason outside
 * the message (the bus was down mid-handling): handed back and tried again after this long.
 * A message that cannot be decoded is never retried: it is dead-lettered.
 */
export const REDELIVERY_DELAY_MS = 2000;
