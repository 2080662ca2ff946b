import { createHash } from 'node:crypto';
import { handles, type Bus } from '../bus.js';
import { codecs } from '../messages.js';
import { STREAMS, preparedSubject } from '../names.js';

/*
 * Prepared inputs (GRAFT_PREPARED): photos decoded and resized to a backbone's input, one copy per
 * photo, input size and resize rule, kept as the raw pixels the rule gave. This module is its only
 * reader and writer. A cache: a copy that is missing, evicted or damaged is made again from the
 * original, so nothing here can fail a task.
 */

/** What reading a prepared copy gave. */
export type PreparedRead = { ok: true; pixels: Uint8Array } | { ok: false; problem: 'missing' | 'damaged'; message: string };

/**
 * The pixels of a photo prepared at `size` by `rule`, checked (size, rule, length, digest).
 * One direct get: no consumer, nothing left on the server.
 * @throws Error only when the bus cannot answer (the caller falls back to the original).
 */
export async function readPrepared(bus: Bus, rule: string, size: number, sha256: string): Promise<PreparedRead> {
  const m = await handles(bus).jsm.direct.getMessage(STREAMS.prepared, { last_by_subj: preparedSubject(rule, size, sha256) });
  if (!m || m.data.byteLength === 0) return { ok: false, problem: 'missing', message: 'not prepared' };
  let p;
  try {
    p = codecs.preparedInput.decode(m.data, `prepared input ${sha256}`);
  } catch (err) {
    return { ok: false, problem: 'damaged', message: (err as Error).message };
  }
  if (p.sourceSha256 !== sha256 || p.size !== size || p.rule !== rule)
    return { ok: false, problem: 'damaged', message: 'prepared input names another photo, size or rule than its subject' };
  if (p.pixels.byteLength !== size * size * 3)
    return { ok: false, problem: 'damaged', message: `prepared input holds ${p.pixels.byteLength} bytes, not ${size}x${size}x3` };
  if (!createHash('sha256').update(p.pixels).digest().equals(Buffer.from(p.pixelsSha256)))
    return { ok: false, problem: 'damaged', message: 'prepared input does not match its digest' };
  return { ok: true, pixels: p.pixels };
}

/**
 * Stores the pixels a photo gave at `size` by `rule` (replacing any earlier copy): one message, so a
 * process killed while writing leaves the whole copy or none.
 * @throws as JetStream when the write is not acknowledged.
 */
export async function putPrepared(bus: Bus, rule: string, size: number, sha256: string, pixels: Uint8Array): Promise<void> {
  if (pixels.byteLength !== size * size * 3) throw new RangeError(`prepared pixels of ${sha256} are ${pixels.byteLength} bytes, not ${size}x${size}x3`);
  const msg = codecs.preparedInput.encode({ sourceSha256: sha256, size, rule, pixels, pixelsSha256: createHash('sha256').update(pixels).digest() });
  await handles(bus).js.publish(preparedSubject(rule, size, sha256), msg);
}
