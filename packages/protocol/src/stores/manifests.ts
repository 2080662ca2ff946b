import type { ConsumerMessages } from '@nats-io/jetstream';
import { createHash } from 'node:crypto';
import { handles, type Bus } from '../bus.js';
import { codecs, pb, type DatasetManifest } from '../messages.js';
import { ProtocolError } from '../errors.js';
import { CONSUMERS, STREAMS, manifestPageSubject, manifestSubject } from '../names.js';
import { isStoreFull, storeFullMessage } from '../policy/retry.js';
import { bindJobId, jobIdProblem, newJobPrefix, pageHash, pagesDigest } from '../policy/job-ids.js';

/*
 * Manifests: each job's dataset manifest (GRAFT_MANIFESTS, the first one per job kept), and the image
 * lists of large ones in pages (GRAFT_MANIFEST_PAGES, each page once). This module is the only reader
 * and writer of both: publishing under an id made from the content, reading back a page at a time.
 */

/** Pages a manifest may have, and images in all: a header asking for more is refused unread. */
export const PAGED_MANIFEST_LIMITS = { pages: 100_000, images: 20_000_000 } as const;

/**
 * A job's manifest as published, its image list read back from its pages when it has them (the
 * manifests stream keeps the first one per job).
 * @returns undefined when the stream no longer holds it.
 * @throws ProtocolError when what it holds is not a readable manifest of this job, or a page is missing or another's.
 */
export async function readManifest(bus: Bus, jobId: string): Promise<DatasetManifest | undefined> {
  const manifest = await readManifestHeader(bus, jobId);
  return manifest?.imagePages ? withPages(bus, manifest) : manifest;
}

/**
 * A job's manifest as published, without reading its pages: a paged manifest's `images` is then
 * empty and `imageCount` says how many its pages hold (what a status needs of a million photos).
 */
export async function readManifestHeader(bus: Bus, jobId: string): Promise<DatasetManifest | undefined> {
  const stored = await handles(bus).jsm.streams.getMessage(STREAMS.manifests, { last_by_subj: manifestSubject(jobId) });
  if (!stored) return undefined;
  const manifest = codecs.manifest.decode(stored.data, `stored manifest of ${jobId}`);
  if (manifest.jobId !== jobId) throw new ProtocolError(`the stored manifest of ${jobId} is for job ${JSON.stringify(manifest.jobId)}`);
  return manifest;
}

/**
 * A paged manifest with its image list read back, page by page (a page is at most a message).
 * @throws ProtocolError for a header over the limits, a missing page, a page of another job, or a count that does not add up.
 */
export async function withPages(bus: Bus, header: DatasetManifest): Promise<DatasetManifest> {
  const images: DatasetManifest['images'] = [];
  for await (const page of imagePages(bus, header)) for (const img of page) images.push(img);
  return { ...header, images };
}

/**
 * A manifest's image list a page at a time, never whole: a paged manifest's pages in order, a
 * whole manifest's list as one page.
 * @throws ProtocolError as {@link withPages}, by the page where it finds the problem.
 */
export async function* imagePages(
  bus: Bus,
  header: Pick<DatasetManifest, 'jobId' | 'imagePages' | 'imageCount' | 'pagesSha256'> & { images?: DatasetManifest['images'] },
): AsyncGenerator<DatasetManifest['images']> {
  const pages = header.imagePages;
  if (!pages) {
    yield header.images ?? [];
    return;
  }
  const count = Number(header.imageCount);
  if (pages > PAGED_MANIFEST_LIMITS.pages || count > PAGED_MANIFEST_LIMITS.images)
    throw new ProtocolError(
      `manifest of ${header.jobId} asks for ${pages} pages and ${count} images, over ${PAGED_MANIFEST_LIMITS.pages} and ${PAGED_MANIFEST_LIMITS.images}`,
    );
  // Headers published before pages were digested (pages_sha256 empty) name their job in each page.
  const digest = header.pagesSha256?.length ? createHash('sha256') : undefined;
  let seen = 0;
  for (let page = 0; page < pages; page++) {
    const m = await handles(bus).jsm.streams.getMessage(STREAMS.manifestPages, { last_by_subj: manifestPageSubject(header.jobId, page) });
    if (!m) throw new ProtocolError(`manifest of ${header.jobId} is missing page ${page + 1} of ${pages}`);
    const p = codecs.manifestPage.decode(m.data, `page ${page + 1} of the manifest of ${header.jobId}`);
    if ((digest ? p.jobId !== '' : p.jobId !== header.jobId) || p.page !== page)
      throw new ProtocolError(`page ${page + 1} of the manifest of ${header.jobId} is page ${p.page + 1} of ${JSON.stringify(p.jobId)}`);
    digest?.update(createHash('sha256').update(m.data).digest());
    seen += p.images.length;
    if (seen > count) break;
    if (digest && page === pages - 1 && !Buffer.from(header.pagesSha256).equals(digest.digest()))
      throw new ProtocolError(`the pages of the manifest of ${header.jobId} are not the ones its header names (published by someone else under its id?)`);
    yield p.images;
  }
  if (seen !== count) throw new ProtocolError(`manifest of ${header.jobId} says ${count} images; its pages hold ${seen}`);
}

/** The largest message the server takes, bytes (what a manifest must fit in). */
function maxMessageBytes(bus: Bus): number {
  return handles(bus).nc.info?.max_payload ?? 1024 * 1024;
}

/** A job id that was published already: a job has one manifest. */
export class JobAlreadyPublished extends Error {
  constructor(
    readonly jobId: string,
    options?: { cause?: unknown },
  ) {
    super(`job ${jobId} was published already: a job has one manifest`, options);
    this.name = 'JobAlreadyPublished';
  }
}

/** Bytes of image list per page: well inside any server's max_payload. */
const PAGE_BYTES = 512 * 1024;

/**
 * Publishes a job's manifest (its images already stored) under an id made from its content (see
 * the job-ids policy): `prefix` and the digest of the header, which commits to the image list (in
 * it, or in its pages). One too big for a message goes as a header (no images, a page count, the
 * pages' digest) after its image list in pages, so a job has no size limit but the stores'. The
 * streams keep only a job's first manifest and pages; the coordinator that takes it checks the id
 * against the content and writes the job's first record (publishers cannot write records), and
 * until then readJob shows it queued.
 * @param manifest its jobId is not read: the id is made here.
 * @param pageBytes bytes of image list per page (tests make it small to page small jobs).
 * @returns the job id.
 * @throws JobAlreadyPublished when a manifest is there under that id; Error saying so when the manifests store is full.
 */
export async function publishManifest(bus: Bus, manifest: DatasetManifest, prefix: string = newJobPrefix(), pageBytes = PAGE_BYTES): Promise<string> {
  // Its own list decides paging: a manifest read back whole (pages and all) is published afresh.
  const plain = { ...manifest, jobId: '', imagePages: 0, imageCount: 0, pagesSha256: new Uint8Array(0) };
  const whole = codecs.manifest.encode(plain).byteLength <= Math.min(pageBytes, maxMessageBytes(bus) - 64 * 1024);
  if (whole) {
    const header = bindJobId(prefix, plain);
    await publishOnce(bus, header.jobId, manifestSubject(header.jobId), codecs.manifest.encode(header), header.jobId);
    return header.jobId;
  }
  const pages = paginate(manifest.images, pageBytes);
  const header = bindJobId(prefix, {
    ...plain,
    images: [],
    imagePages: pages.length,
    imageCount: manifest.images.length,
    pagesSha256: pagesDigest(pages.map(pageHash)),
  });
  await publishPagesAndHeader(bus, header, pages);
  return header.jobId;
}

/** A paged job: its pages first (a header names only pages that are there), then its header. */
async function publishPagesAndHeader(bus: Bus, header: DatasetManifest, pages: Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<void> {
  let i = 0;
  for await (const page of pages) await publishOnce(bus, header.jobId, manifestPageSubject(header.jobId, i), page, `${header.jobId}.p${i++}`);
  await publishOnce(bus, header.jobId, manifestSubject(header.jobId), codecs.manifest.encode(header), header.jobId);
}

/**
 * Publishes a new job over the photos of a published one (a sweep or an audit of it): `job` is the
 * new manifest's header (options; no id, no images); the image list is `from`'s, read a page at a
 * time (twice: its digest is in the new id, which names the pages), so a job of a million photos is
 * never held whole.
 * @param from the published job's manifest as {@link readManifestHeader} gives it.
 * @returns the new job's id.
 * @throws as publishManifest, and ProtocolError when `from`'s pages are not readable.
 */
export async function publishOver(bus: Bus, from: DatasetManifest, job: DatasetManifest, prefix: string = newJobPrefix()): Promise<string> {
  if (!from.imagePages) return publishManifest(bus, { ...job, images: from.images }, prefix);
  async function* pages() {
    let page = 0;
    for await (const images of imagePages(bus, from)) yield codecs.manifestPage.encode({ page: page++, images });
  }
  const hashes: Uint8Array[] = [];
  for await (const page of pages()) hashes.push(pageHash(page));
  const header = bindJobId(prefix, { ...job, jobId: '', images: [], imagePages: hashes.length, imageCount: from.imageCount, pagesSha256: pagesDigest(hashes) });
  await publishPagesAndHeader(bus, header, pages());
  return header.jobId;
}

/**
 * Whether the job stored under an id is whole and its own: its header's id is its content's, and its
 * pages are the ones the header commits to (a page raced in under the id by somebody else is not).
 */
export async function isStoredJobSound(bus: Bus, jobId: string): Promise<boolean> {
  const header = await readManifestHeader(bus, jobId).catch(() => undefined);
  if (!header || jobIdProblem(header)) return false;
  try {
    for await (const _ of imagePages(bus, header)) void _;
    return true;
  } catch {
    return false;
  }
}

/**
 * Removes a manifest header refused for not being its id's content (somebody published under an id
 * that is not theirs): the id is free again for its owner, whose pages under it are left as they are.
 * The coordinator's repair.
 */
export async function removeForeignManifest(bus: Bus, jobId: string): Promise<void> {
  await handles(bus).jsm.streams.purge(STREAMS.manifests, { filter: manifestSubject(jobId) });
}

/**
 * One message of a job's manifest, kept once: a second header is JobAlreadyPublished. A page that
 * is there already with the same bytes is left as it is (a publish cut off before its header, tried
 * again: the job is published when its header is).
 */
async function publishOnce(bus: Bus, jobId: string, subject: string, data: Uint8Array, msgID: string): Promise<void> {
  let conflict: unknown;
  try {
    if (!(await handles(bus).js.publish(subject, data, { msgID })).duplicate) return;
  } catch (err) {
    // Checked first: JetStream words a second message on a subject as a full store too.
    if (!/maximum messages per subject/i.test((err as Error).message)) {
      if (isStoreFull(err)) throw new Error(`cannot publish job ${jobId}: ${storeFullMessage('manifests', STREAMS.manifests)}`, { cause: err });
      throw err;
    }
    conflict = err;
  }
  if (subject !== manifestSubject(jobId)) {
    const stored = await handles(bus).jsm.streams.getMessage(STREAMS.manifestPages, { last_by_subj: subject });
    if (stored && Buffer.from(stored.data).equals(data)) return;
  }
  throw new JobAlreadyPublished(jobId, conflict ? { cause: conflict } : undefined);
}

/** An image list as pages of at most pageBytes each (one image per page at least), without a job id: the subject names it. */
function paginate(images: DatasetManifest['images'], pageBytes: number): Uint8Array[] {
  const pages: Uint8Array[] = [];
  let batch: DatasetManifest['images'] = [];
  let size = 0;
  const flush = () => {
    pages.push(codecs.manifestPage.encode({ page: pages.length, images: batch }));
    batch = [];
    size = 0;
  };
  for (const img of images) {
    const n = pb.ImageEntry.encode(img).len + 4;
    if (batch.length && size + n > pageBytes) flush();
    batch.push(img);
    size += n;
  }
  if (batch.length) flush();
  return pages;
}

/** The coordinator's stream of manifests (stop it to end). */
export async function consumeManifests(bus: Bus, maxMessages = 4): Promise<ConsumerMessages> {
  const c = await handles(bus).js.consumers.get(STREAMS.manifests, CONSUMERS.manifests);
  return c.consume({ max_messages: maxMessages });
}
