import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/*
 * Task tokens: the coordinator signs each task it enqueues (HMAC-SHA256 under the coordinators' key)
 * and accepts a vector batch only with its task's token, so results come only from a worker that
 * was given that task, for exactly that task's images. Claims carry a proof derived from the token
 * (never the token itself: workers read each other's claims), so only a holder of the task can
 * claim it or mark it answered.
 */

/** What a token covers. */
export interface SignedTask {
  jobId: string;
  taskId: string;
  fingerprint: string;
  imageIds: readonly string[];
}

/** The token of a task under a key (hex). */
export function taskToken(key: Uint8Array, t: SignedTask): string {
  return createHmac('sha256', key)
    .update(`${t.jobId}\n${t.taskId}\n${t.fingerprint}\n${t.imageIds.join(',')}`)
    .digest('hex');
}

/** Whether a batch's token is its task's (constant time). */
export function isTaskToken(key: Uint8Array, t: SignedTask, token: string): boolean {
  const want = Buffer.from(taskToken(key, t), 'hex');
  const got = Buffer.from(/^[0-9a-f]{64}$/.test(token) ? token : '', 'hex');
  return got.length === want.length && timingSafeEqual(got, want);
}

/** A claim's proof of holding the task: derived from the token, which it does not reveal. */
export function claimProof(token: string, kind: 'claim' | 'answered'): string {
  return createHash('sha256').update(`${kind}\n${token}`).digest('hex').slice(0, 32);
}
