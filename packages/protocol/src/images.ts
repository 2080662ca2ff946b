import { createHash } from 'node:crypto';
import { BUCKETS } from './names.js';
import type { Bus } from './bus.js';

/** The object store's stream and chunk subjects (its documented storage layout). */
const IMAGES_STREAM = `OBJ_${BUCKETS.images}`;
const chunkSubject = (nuid: string) => `$O.${BUCKETS.images}.C.${nuid}`;

/**
 * Reads an image's bytes from the image store, or null when there is no such object.
 * A photo that fits in one chunk (up to 128 KiB, most of them) is read with two message
 * gets instead of the ordered consumer a generic object get creates and deletes: on the
 * worker's hot path that consumer cost more bus time than the photo. The SHA-256 digest
 * is checked either way; larger objects take the generic path.
 * @throws Error when the stored bytes do not match their digest.
 */
export async function readImage(bus: Bus, sha256: string): Promise<Uint8Array | null> {
  const info = await bus.images.info(sha256);
  if (!info || info.deleted) return null;
  if (info.size === 0) return new Uint8Array(0);
  if (info.chunks !== 1) return bus.images.getBlob(sha256);
  const msg = await bus.jsm.streams.getMessage(IMAGES_STREAM, { last_by_subj: chunkSubject(info.nuid) });
  if (!msg) return bus.images.getBlob(sha256);
  const data = msg.data;
  const expected = Buffer.from(info.digest.replace(/^SHA-256=/, '').replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  const actual = createHash('sha256').update(data).digest();
  if (!actual.equals(expected)) throw new Error(`image ${sha256} is corrupt in the store: its digest does not match`);
  return data;
}
