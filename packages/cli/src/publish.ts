import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Split,
  VectorDType,
  codecs,
  inPool,
  isImageStored,
  isStoredJobSound,
  JobAlreadyPublished,
  newIdNonce,
  publishManifest,
  publishOver,
  putImage,
  readManifestHeader,
  splitNamed,
  splitOf,
  splitPercents,
  type Bus,
  type DatasetManifest,
  type TrainingOptions,
} from '@graft/protocol';
import { backboneRequest, redactUrl, type BackboneOverrides, type ModelUpload } from '@graft/vision';
import { prepareLocalModel, uploadModel } from './model-upload.js';
import { downloadImages, type DownloadOptions } from './downloads.js';
import { describeError } from './errors.js';
import { applyFixes, readFixes, type FixesOption } from './fixes.js';
import { isImageListFile, readImageList, type ImageList, type ImageListOptions } from './image-list.js';
import { createProgress } from './progress.js';
import { scanDataset, type ScanResult, type ScannedImage } from './scan.js';
import { MIN_MAX_SIDE, shrinkImages } from './shrink.js';

export interface PublishOptions {
  name?: string;
  /** auto (default), a catalogue id, or a model path/URL. */
  backbone?: string;
  overrides?: BackboneOverrides;
  /** Only what the user gave: absent options take the coordinator's defaults. */
  training?: TrainingOptions;
  vectorDType?: 'float32' | 'float16';
  /** TSV of `path<TAB>train|validation|test` (paths relative to the folder) fixing splits. */
  splitsFile?: string;
  /** Print progress (default true). */
  progress?: boolean;
  /** How to read a list file (CSV, TSV, JSONL) given instead of a folder. */
  list?: ImageListOptions;
  /** How a list's URLs are downloaded. */
  download?: DownloadOptions;
  /** Store local photos larger than this (longer side, pixels) as re-encoded copies of that size. */
  maxSide?: number;
  /** Where those copies are kept between runs (default: a temporary folder). */
  shrinkCacheDir?: string;
  /** An audit's fixes list applied before publishing (--exclude or --relabel). */
  fixes?: FixesOption;
}

export interface Published {
  jobId: string;
  scan: ScanResult;
  uploaded: number;
  alreadyStored: number;
  /** Images stored as a shrunk copy (--max-side). */
  shrunk: number;
}

/** Tries of a publish whose id somebody took first (published a header under it): each with a new id. */
const PUBLISH_TRIES = 3;

/**
 * Publishes a job's manifest under a fresh id; when somebody published under that id first (a
 * header raced in after seeing the pages), again under a new one.
 */
async function publishFresh(bus: Bus, publish: (nonce: string) => Promise<string>): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await publish(newIdNonce());
    } catch (err) {
      if (!(err instanceof JobAlreadyPublished) || attempt >= PUBLISH_TRIES) throw err;
      process.stderr.write(`job ${err.jobId} was taken by another publisher before this one finished: publishing under a new id\n`);
    }
  }
}

async function readSplits(file: string): Promise<Map<string, Split>> {
  const map = new Map<string, Split>();
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new Error(`cannot read --splits ${file}: ${describeError(err)}`, { cause: err });
  }
  for (const [i, line] of text.split('\n').entries()) {
    if (!line.trim()) continue;
    if (!line.includes('\t')) throw new Error(`${file}:${i + 1}: expected "path<TAB>train|validation|test" (a tab between them), got ${JSON.stringify(line.slice(0, 80))}`);
    const [path, split] = line.split('\t');
    // A splits file fixes every listed image's set: "unassigned" or nothing is refused here.
    const s = splitNamed(split ?? '');
    if (s === undefined || s === Split.SPLIT_UNSPECIFIED) throw new Error(`${file}:${i + 1}: split must be train, validation or test, got ${JSON.stringify(split)}`);
    map.set(path.trim(), s);
  }
  return map;
}

/**
 * Scans DIR, uploads new images to the image store (content-addressed: a photo already
 * there is not sent again), and publishes the manifest. Nothing is published if the
 * folder or options are bad.
 * @throws Error naming the folder, file or option at fault.
 */
export async function publishDataset(bus: Bus, dir: string, o: PublishOptions = {}): Promise<Published> {
  const show = o.progress ?? true;
  let ref = backboneRequest(o.backbone ?? 'auto', o.overrides); // validates before any upload
  const splits = o.splitsFile ? await readSplits(o.splitsFile) : undefined;
  const fixes = o.fixes ? await readFixes(o.fixes) : undefined;
  const scan = isImageListFile(dir) ? await scanList(bus, await checkedList(dir, o.list), o, show) : await scanFolder(dir, show);
  if (fixes) {
    const { images, classes, applied: a } = applyFixes(scan.images, scan.classes, fixes, o.fixes!.mode);
    scan.images = images;
    scan.classes = classes;
    if (show) process.stderr.write(`--${o.fixes!.mode} ${o.fixes!.file}: ${a.excluded} photos left out, ${a.relabelled} relabelled${a.stale.length ? `; ${a.stale.length} lines not applied:\n  ${a.stale.slice(0, 20).join('\n  ')}` : ''}\n`);
  }
  if (scan.images.length === 0) throw new Error(`${dir} has no images`);
  // The same checks as --dry-run: what one refuses, the other refuses.
  const { problems, model } = await planProblems(scan.images, o, splits);
  if (problems.length) throw new Error(`${dir}${fixes ? ' (after the fixes)' : ''}: ${problems.join('; ')}`);
  for (const s of scan.skipped) if (show) process.stderr.write(`skipped ${s.path}: ${s.reason}\n`);
  let shrunk = 0;
  if (o.maxSide) {
    if (!Number.isInteger(o.maxSide) || o.maxSide < MIN_MAX_SIDE) throw new Error(`max side must be an integer of at least ${MIN_MAX_SIDE} pixels, got ${o.maxSide}`);
    const bar = show ? createProgress('shrinking') : undefined;
    shrunk = await shrinkImages(scan.images, o.maxSide, o.shrinkCacheDir ?? join(tmpdir(), 'graft-shrunk'), (d, t) => bar?.update(d, t));
    bar?.done(show ? `${shrunk} of ${scan.images.length} images over ${o.maxSide} px: stored as ${o.maxSide} px copies` : undefined);
  }

  if (model) ref = await uploadModel(bus, ref, model, show);
  const manifest: DatasetManifest = codecs.manifest.create({
    jobId: '',
    datasetId: createHash('sha256').update(scan.images.map((i) => `${i.path}\t${i.sha256}`).sort().join('\n')).digest('hex').slice(0, 16),
    name: o.name ?? dir.split('/').filter(Boolean).pop() ?? 'dataset',
    classes: scan.classes,
    images: scan.images.map((i: ScannedImage & { originalSha256?: string }) => ({
      sha256: i.sha256,
      label: i.label,
      path: i.path,
      sizeBytes: i.sizeBytes,
      split: i.split || (splits?.get(i.path) ?? Split.SPLIT_UNSPECIFIED),
      source: i.source ?? '',
      originalSha256: i.originalSha256 ?? '',
    })),
    maxSide: o.maxSide ?? 0,
    backbone: ref,
    training: o.training ?? {},
    skipped: scan.skipped,
    createdAtMs: Date.now(),
    vectorDtype: o.vectorDType === 'float16' ? VectorDType.VECTOR_DTYPE_FLOAT16 : VectorDType.VECTOR_DTYPE_FLOAT32,
  });
  // Upload: unique contents only, a few at a time.
  const unique = [...new Map(scan.images.filter((i) => i.file).map((i) => [i.sha256, i])).values()];
  const bar = show ? createProgress('uploading') : undefined;
  let uploaded = 0;
  let stored = 0;
  await inPool(
    unique,
    8,
    async (img) => {
      // Stored only if its digest is this photo's: an object of that name holding other bytes is replaced.
      if (await isImageStored(bus, img.sha256, img.sizeBytes)) stored++;
      else {
        await putImage(bus, { name: img.sha256, description: img.path }, new Uint8Array(await readFile(img.file!)));
        uploaded++;
      }
    },
    (d, t) => bar?.update(d, t),
  );
  bar?.done(show ? `uploaded ${uploaded} images (${stored} already stored)` : undefined);

  const jobId = await publishFresh(bus, (idNonce) => publishManifest(bus, { ...manifest, idNonce }));
  return { jobId, scan, uploaded, alreadyStored: stored, shrunk };
}

/**
 * A finished job's images and classes as a new job that sweeps heads (the vectors are cached:
 * no backbone call; the image list copied a page at a time). @throws Error when the job's manifest is gone.
 */
export async function publishSweep(bus: Bus, jobId: string, sweepGrid?: string): Promise<string> {
  const old = await readManifestHeader(bus, jobId);
  if (!old) throw new Error(`no manifest of job ${jobId} (graft status lists the jobs)`);
  const header = codecs.manifest.create({ ...old, images: [], jobId: '', createdAtMs: Date.now(), training: { ...(old.training ?? {}), sweep: true, sweepGrid: sweepGrid ?? '' } });
  return publishFresh(bus, (idNonce) => publishOver(bus, old, { ...header, idNonce }));
}

/** The prefix of the audit job of a job with K folds (its id is the prefix and the digest of its content). */
export function auditJobPrefix(jobId: string, folds: number): string {
  return `${jobId.slice(0, 30)}-audit-k${folds}-`;
}

/**
 * A job's images again as a job that trains its head and audits the photos (the vectors are cached:
 * no backbone call; the image list copied a page at a time). A sweep's job is audited with its
 * winning head's options, not swept again. Its id is made from the job and the options alone, so
 * running graft audit again follows the same job; one squatted by somebody else (a header or pages
 * under that id that are not this content) is not followed: the audit is published under a new id.
 * @param old the job's manifest as readManifestHeader gives it.
 * @returns the audit job's id and whether it already existed (an earlier graft audit published it).
 * @throws Error when the job's manifest is gone.
 */
export async function publishAudit(bus: Bus, old: DatasetManifest, folds: number, winner?: TrainingOptions): Promise<{ jobId: string; existed: boolean }> {
  const base = old.training?.sweep && winner ? { ...old.training, ...winner, sweep: false, sweepGrid: '' } : (old.training ?? {});
  // Created at the job's time, not now: the same audit is the same content.
  const header = codecs.manifest.create({ ...old, images: [], jobId: '', idNonce: '', training: { ...base, audit: true, auditFolds: folds } });
  const prefix = auditJobPrefix(old.jobId, folds);
  try {
    return { jobId: await publishOver(bus, old, header, prefix), existed: false };
  } catch (err) {
    if (!(err instanceof JobAlreadyPublished)) throw err;
    if (await isStoredJobSound(bus, err.jobId)) return { jobId: err.jobId, existed: true };
    process.stderr.write(`the audit id ${err.jobId} holds a manifest that is not this audit's (published by someone else?): publishing under a new id\n`);
    return { jobId: await publishFresh(bus, (idNonce) => publishOver(bus, old, { ...header, idNonce, createdAtMs: Date.now() }, prefix)), existed: false };
  }
}

async function scanFolder(dir: string, show: boolean): Promise<ScanResult> {
  const bar = show ? createProgress('scanning') : undefined;
  const scan = await scanDataset(dir, { onFile: (d, t) => bar?.update(d, t) });
  bar?.done();
  return scan;
}

/**
 * Reads a list file and refuses it whole when any row has a problem, naming every problem with
 * its line, before anything is uploaded or downloaded.
 */
export async function checkedList(path: string, o: ImageListOptions = {}): Promise<ImageList> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new Error(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
  const list = await readImageList(path, text, o);
  if (list.problems.length) {
    const shown = list.problems.slice(0, 50);
    throw new Error(`${path} has ${list.problems.length} problem${list.problems.length > 1 ? 's' : ''}; nothing was uploaded:\n  ${shown.join('\n  ')}${list.problems.length > shown.length ? `\n  ... and ${list.problems.length - shown.length} more` : ''}`);
  }
  if (list.images.length === 0) throw new Error(`${path} lists no images`);
  return list;
}

/** A checked list's images, local ones hashed, remote ones downloaded into the store (failures listed, the rest goes on). */
async function scanList(bus: Bus, list: ImageList, o: PublishOptions, show: boolean): Promise<ScanResult> {
  const images: ScannedImage[] = [];
  const skipped: ScanResult['skipped'] = [];
  const source = (line: number) => `${list.name}:${line}`;
  for (const img of list.images.filter((i) => i.file)) {
    const bytes = await readFile(img.file!);
    images.push({ path: img.location, label: img.label, sha256: createHash('sha256').update(bytes).digest('hex'), sizeBytes: bytes.byteLength, file: img.file, split: img.split, source: source(img.line) });
  }
  const remote = list.images.filter((i) => i.url);
  if (remote.length) {
    const bar = show ? createProgress('downloading') : undefined;
    const got = await downloadImages(bus, remote.map((i) => i.url!), { ...o.download, onProgress: (d, t) => bar?.update(d, t) });
    bar?.done(show ? `downloaded ${got.downloaded} images (${remote.length - got.downloaded - got.failed.size} unchanged), ${got.failed.size} failed` : undefined);
    for (const img of remote) {
      const ok = got.stored.get(img.url!);
      // Stored and shown without the URL's credentials: the manifest is readable by every cli user.
      if (ok) images.push({ path: redactUrl(img.location), label: img.label, sha256: ok.sha256, sizeBytes: ok.size, split: img.split, source: source(img.line) });
      else skipped.push({ path: redactUrl(img.location), reason: `${source(img.line)}: ${got.failed.get(img.url!) ?? 'not downloaded'}` });
    }
  }
  const classes = [...new Set(images.map((i) => i.label))].sort();
  return { root: list.name, classes, images, skipped };
}

/**
 * What publishing would do, without a bus: the classes, images per split (the coordinator's own
 * split rule), and every problem of a list with its line. For --dry-run.
 * @returns the text to print and whether it found problems.
 */
export async function planDataset(source: string, o: PublishOptions = {}): Promise<{ text: string; ok: boolean }> {
  const splits = o.splitsFile ? await readSplits(o.splitsFile) : undefined;
  const percents = splitPercents(o.training);
  let entries: { path: string; label: string; split: Split }[];
  let problems: string[] = [];
  let skipped: ScanResult['skipped'] = [];
  if (isImageListFile(source)) {
    const list = await readImageList(source, await readFile(source, 'utf8'), o.list);
    problems = list.problems;
    entries = list.images.map((i) => ({ path: i.location, label: i.label, split: i.split || (splits?.get(i.location) ?? Split.SPLIT_UNSPECIFIED) }));
  } else {
    const scan = await scanDataset(source);
    skipped = scan.skipped;
    entries = scan.images.map((i) => ({ path: i.path, label: i.label, split: splits?.get(i.path) ?? Split.SPLIT_UNSPECIFIED }));
  }
  if (o.fixes) entries = applyFixes(entries, [], await readFixes(o.fixes), o.fixes.mode).images;
  problems.push(...(await planProblems(entries, o, splits)).problems);
  const counts = new Map<string, { train: number; validation: number; test: number }>();
  for (const e of entries) {
    const c = counts.get(e.label) ?? { train: 0, validation: 0, test: 0 };
    c[splitOf(e, percents)]++;
    counts.set(e.label, c);
  }
  const width = Math.max(5, ...[...counts.keys()].map((k) => k.length));
  const lines = [`${source}: ${entries.length} image${entries.length === 1 ? '' : 's'} in ${counts.size} class${counts.size === 1 ? '' : 'es'} (dry run: nothing uploaded)`, `  ${'class'.padEnd(width)}  train  validation  test`];
  for (const [label, c] of [...counts].sort((a, b) => a[0].localeCompare(b[0]))) lines.push(`  ${label.padEnd(width)}  ${String(c.train).padStart(5)}  ${String(c.validation).padStart(10)}  ${String(c.test).padStart(4)}`);
  for (const s of skipped) lines.push(`skipped ${s.path}: ${s.reason}`);
  if (problems.length) lines.push(`${problems.length} problem${problems.length > 1 ? 's' : ''}:`, ...problems.map((p) => `  ${p}`));
  return { text: lines.join('\n'), ok: problems.length === 0 };
}

/**
 * What a real publish (or the coordinator) would refuse, found without uploading anything; and a
 * local model --backbone names, read and checked (what a real publish then uploads).
 */
async function planProblems(entries: readonly { path: string; label: string }[], o: PublishOptions, splits?: ReadonlyMap<string, Split>): Promise<{ problems: string[]; model?: ModelUpload }> {
  const problems: string[] = [];
  let model: ModelUpload | undefined;
  try {
    const prepared = await prepareLocalModel(backboneRequest(o.backbone ?? 'auto', o.overrides));
    if (prepared.problem) problems.push(prepared.problem);
    model = prepared.upload;
  } catch (err) {
    problems.push(`--backbone: ${(err as Error).message}`);
  }
  const classes = new Set(entries.map((e) => e.label));
  if (entries.length === 0) problems.push('no images found (a folder needs one sub-folder per class holding images; a list needs rows)');
  else if (classes.size < 2) problems.push(`only ${classes.size} class (${[...classes][0]}): a classifier needs at least 2`);
  if (splits) {
    const paths = new Set(entries.map((e) => e.path));
    const unknown = [...splits.keys()].filter((p) => !paths.has(p));
    if (unknown.length) problems.push(`--splits ${o.splitsFile} names ${unknown.length} file${unknown.length > 1 ? 's' : ''} not among the images: ${unknown.slice(0, 5).join(', ')}${unknown.length > 5 ? ', ...' : ''}`);
  }
  return { problems, model };
}
