import { createHash, randomBytes } from 'node:crypto';
import { codecs, type DatasetManifest } from '../messages.js';

/*
 * Job ids name their content. An id is a readable prefix and the first 16 hex characters of the
 * SHA-256 of that prefix and the manifest's header (without its id and creation time; a paged
 * header commits to its pages by pages_sha256). Whoever publishes a header under an id must publish
 * exactly the content the id was made from: a header raced in under somebody's id, or squatted under
 * an id somebody else will use, is refused by the coordinator. The same content and prefix give the
 * same id (an audit of a job, published again, is the same job); id_nonce makes ids unique otherwise.
 */

/** Hex characters of a job id that are its content's digest. */
export const JOB_ID_DIGEST_CHARS = 16;

/** A prefix for a new job: time-ordered ids (`j` and the time in base 36). */
export function newJobPrefix(): string {
  return `j${Date.now().toString(36)}`;
}

/** A fresh random id_nonce. */
export function newIdNonce(): string {
  return randomBytes(6).toString('hex');
}

/** A page's SHA-256, of its bytes as stored. */
export function pageHash(page: Uint8Array): Uint8Array {
  return createHash('sha256').update(page).digest();
}

/** SHA-256 over the pages' hashes, in order: what a paged header commits to (pages_sha256). */
export function pagesDigest(pageHashes: readonly Uint8Array[]): Uint8Array {
  const h = createHash('sha256');
  for (const p of pageHashes) h.update(p);
  return h.digest();
}

/** The digest part of a header's id, from the header as it travels (decoded from its bytes). */
function digestOf(prefix: string, header: DatasetManifest): string {
  const content = codecs.manifest.encode({ ...header, jobId: undefined, createdAtMs: undefined } as unknown as DatasetManifest);
  return createHash('sha256').update(`graft job id\n${prefix}\n`).update(content).digest('hex').slice(0, JOB_ID_DIGEST_CHARS);
}

/**
 * The header with its id: `prefix` and the digest of its content. Computed on the header as the
 * coordinator will read it (encoded and decoded), so both sides hash the same bytes.
 */
export function bindJobId(prefix: string, header: DatasetManifest): DatasetManifest {
  const travelled = codecs.manifest.decode(codecs.manifest.encode({ ...header, jobId: '' }), 'manifest header');
  travelled.jobId = `${prefix}${digestOf(prefix, travelled)}`;
  return travelled;
}

/** What is wrong with a header's id (it is not the one its content gives), or undefined. */
export function jobIdProblem(header: DatasetManifest): string | undefined {
  const id = header.jobId;
  const prefix = id.slice(0, -JOB_ID_DIGEST_CHARS);
  if (id.length <= JOB_ID_DIGEST_CHARS || !/^[0-9a-f]+$/.test(id.slice(-JOB_ID_DIGEST_CHARS)))
    return `job id ${JSON.stringify(id.slice(0, 80))} does not end in the digest of its content (${JOB_ID_DIGEST_CHARS} hex characters)`;
  if (digestOf(prefix, header) !== id.slice(-JOB_ID_DIGEST_CHARS))
    return `job id ${id} is not the digest of this manifest's content (a manifest published under someone else's job id?)`;
  return undefined;
}
