import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Split,
  VectorDType,
  codecs,
  pb,
  listJobs,
  isTerminal,
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
  type PredictOptions,
  type TrainingOptions,
} from '@graft/protocol';
import { backboneRequest, type BackboneFields, type ModelUpload } from '@graft/vision';
import { prepareLocalModel, uploadModel } from './model-upload.js';
import { describeError } from './errors.js';
import { applyFixes, readFixes } from './fixes.js';
import { isImageListFile, readImageList } from './image-list.js';
import { createProgress } from './progress.js';
import { scanDataset, type ScanResult, type ScannedImage } from './scan.js';
import { MIN_MAX_SIDE, shrinkImages } from './shrink.js';
import type { PublishOptions, Published } from './publish-options.js';
import { addList, checkedList, scanFolder, scanList } from './publish-sources.js';

export type { PublishOptions, Published };
export { checkedList };

/** Tries of a publish whose id somebody took first (published a header under it): each with a new id. */
const PUBLISH_TRIES = 3;

/**
 * Publishes a job's manifest under a fresh id; when somebody published under that id first (a
 * header raced in after seeing the pages), again under a new one.
 */
export async function publishFresh(bus: Bus, publish: (nonce: string) => Promise<string>): Promise<string> {
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
    if (!line.includes('\t'))
      throw new Error(`${file}:${i + 1}: expected "path<TAB>train|validation|test" (a tab between them), got ${JSON.stringify(line.slice(0, 80))}`);
    const [path, split] = line.split('\t');
    // A splits file fixes every listed image's set: "unassigned" or nothing is refused here.
    const s = splitNamed(split ?? '');
    if (s === undefined || s === Split.SPLIT_UNSPECIFIED)
      throw new Error(`${file}:${i + 1}: split must be train, validation or test, got ${JSON.stringify(split)}`);
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
  const predict = o.predict;
  let ref = predict?.backboneRef ?? backboneRequest(o.backbone ?? 'auto', o.overrides); // validates before any upload
  const splits = o.splitsFile ? await readSplits(o.splitsFile) : undefined;
  const fixes = o.fixes ? await readFixes(o.fixes) : undefined;
  const scan = isImageListFile(dir)
    ? await scanList(bus, await checkedList(dir, { ...o.list, unlabelled: Boolean(predict) }), o, show)
    : await scanFolder(dir, show, Boolean(predict));
  if (predict) scan.classes = predict.classes;
  if (o.add) await addList(bus, scan, o, show);
  if (fixes) {
    const { images, classes, applied: a } = applyFixes(scan.images, scan.classes, fixes, o.fixes!.mode);
    scan.images = images;
    scan.classes = classes;
    if (show)
      process.stderr.write(
        `--${o.fixes!.mode} ${o.fixes!.file}: ${a.excluded} photos left out, ${a.relabelled} relabelled${a.stale.length ? `; ${a.stale.length} lines not applied:\n  ${a.stale.slice(0, 20).join('\n  ')}` : ''}\n`,
      );
  }
  if (scan.images.length === 0) throw new Error(`${dir} has no images`);
  // The same checks as --dry-run: what one refuses, the other refuses.
  const { problems, model } = await planProblems(scan.images, o, splits, scan.classes, ref);
  if (problems.length) throw new Error(`${dir}${fixes ? ' (after the fixes)' : ''}: ${problems.join('; ')}`);
  for (const s of scan.skipped) if (show) process.stderr.write(`skipped ${s.path}: ${s.reason}\n`);
  let shrunk = 0;
  if (o.maxSide) {
    if (!Number.isInteger(o.maxSide) || o.maxSide < MIN_MAX_SIDE)
      throw new Error(`max side must be an integer of at least ${MIN_MAX_SIDE} pixels, got ${o.maxSide}`);
    const bar = show ? createProgress('shrinking') : undefined;
    shrunk = await shrinkImages(scan.images, o.maxSide, o.shrinkCacheDir ?? join(tmpdir(), 'graft-shrunk'), (d, t) => bar?.update(d, t));
    bar?.done(show ? `${shrunk} of ${scan.images.length} images over ${o.maxSide} px: stored as ${o.maxSide} px copies` : undefined);
  }

  if (model) ref = await uploadModel(bus, ref, model, show);
  const manifest: DatasetManifest = codecs.manifest.create({
    jobId: '',
    datasetId: datasetIdOf(scan.images, splits),
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
    predict: predict?.options,
  });
  const { uploaded, stored } = await uploadImages(bus, scan.images, show);
  // A rerun (after Ctrl-C, say) of the same photos and options follows the job already under way.
  const twin = o.newJob ? undefined : await unfinishedTwin(bus, manifest);
  if (twin) return { jobId: twin, scan, uploaded, alreadyStored: stored, shrunk, followed: true };
  const jobId = await publishFresh(bus, (idNonce) => publishManifest(bus, { ...manifest, idNonce }));
  return { jobId, scan, uploaded, alreadyStored: stored, shrunk };
}

/** A dataset's id: the digest of its sorted (path, SHA-256, label, set) rows. */
function datasetIdOf(images: readonly ScannedImage[], splits?: ReadonlyMap<string, Split>): string {
  const rows = images.map((i) => `${i.path}\t${i.sha256}\t${i.label}\t${i.split || (splits?.get(i.path) ?? Split.SPLIT_UNSPECIFIED)}`).sort();
  return createHash('sha256').update(rows.join('\n')).digest('hex').slice(0, 16);
}

/** What makes two manifests the same job: the same rows (datasetId) and classes, the same backbone and options. */
function jobContent(m: DatasetManifest): string {
  const bytes = (b: Uint8Array) => Buffer.from(b).toString('base64');
  return [
    m.datasetId,
    JSON.stringify(m.classes),
    bytes(pb.BackboneRef.encode(pb.BackboneRef.create(m.backbone ?? {})).finish()),
    bytes(pb.TrainingOptions.encode(pb.TrainingOptions.create(m.training ?? {})).finish()),
    m.maxSide ?? 0,
    m.vectorDtype ?? 0,
    m.predict ? bytes(pb.PredictOptions.encode(pb.PredictOptions.create(m.predict)).finish()) : '',
  ].join('|');
}

/** An unfinished job (extracting, training...) of the same photos and options, if one exists: its id. */
export async function unfinishedTwin(bus: Bus, manifest: DatasetManifest): Promise<string | undefined> {
  const key = jobContent(manifest);
  for (const s of await listJobs(bus)) {
    if (isTerminal(s.state)) continue;
    const other = await readManifestHeader(bus, s.jobId).catch(() => undefined);
    if (other && jobContent(other) === key) return s.jobId;
  }
  return undefined;
}

/** Uploads the photos the store does not hold yet: each content once, a few at a time. */
async function uploadImages(bus: Bus, images: readonly ScannedImage[], show: boolean): Promise<{ uploaded: number; stored: number }> {
  const unique = [...new Map(images.filter((i) => i.file).map((i) => [i.sha256, i])).values()];
  const bar = show ? createProgress('uploading') : undefined;
  let uploaded = 0;
  let stored = 0;
  await inPool(
    unique,
    8,
    async (img) => {
      // A photo is stored once: a name already holding its record (and size) is not uploaded again.
      if (await isImageStored(bus, img.sha256, img.sizeBytes)) stored++;
      else {
        await putImage(bus, { name: img.sha256, description: img.path }, new Uint8Array(await readFile(img.file!)));
        uploaded++;
      }
    },
    (d, t) => bar?.update(d, t),
  );
  bar?.done(show ? `uploaded ${uploaded} images (${stored} already stored)` : undefined);
  return { uploaded, stored };
}

/**
 * A finished job's images and classes as a new job that sweeps heads (the vectors are cached:
 * no backbone call; the image list copied a page at a time). @throws Error when the job's manifest is gone.
 */
export async function publishSweep(bus: Bus, jobId: string, sweepGrid?: string): Promise<string> {
  const old = await readManifestHeader(bus, jobId);
  if (!old) throw new Error(`no manifest of job ${jobId} (graft status lists the jobs)`);
  const header = codecs.manifest.create({
    ...old,
    images: [],
    jobId: '',
    createdAtMs: Date.now(),
    training: { ...(old.training ?? {}), sweep: true, sweepGrid: sweepGrid ?? '' },
  });
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
  let folderClasses: string[] = [];
  if (isImageListFile(source)) {
    const list = await readImageList(source, await readFile(source, 'utf8'), o.list);
    problems = list.problems;
    entries = list.images.map((i) => ({ path: i.location, label: i.label, split: i.split || (splits?.get(i.location) ?? Split.SPLIT_UNSPECIFIED) }));
  } else {
    const scan = await scanDataset(source);
    skipped = scan.skipped;
    folderClasses = scan.classes;
    entries = scan.images.map((i) => ({ path: i.path, label: i.label, split: splits?.get(i.path) ?? Split.SPLIT_UNSPECIFIED }));
  }
  if (o.fixes) entries = applyFixes(entries, [], await readFixes(o.fixes), o.fixes.mode).images;
  problems.push(...(await planProblems(entries, o, splits, o.fixes ? [] : folderClasses)).problems);
  const counts = new Map<string, { train: number; validation: number; test: number }>();
  for (const e of entries) {
    const c = counts.get(e.label) ?? { train: 0, validation: 0, test: 0 };
    c[splitOf(e, percents)]++;
    counts.set(e.label, c);
  }
  const width = Math.max(5, ...[...counts.keys()].map((k) => k.length));
  const lines = [
    `${source}: ${entries.length} image${entries.length === 1 ? '' : 's'} in ${counts.size} class${counts.size === 1 ? '' : 'es'} (dry run: nothing uploaded)`,
    `  ${'class'.padEnd(width)}  train  validation  test`,
  ];
  for (const [label, c] of [...counts].sort((a, b) => a[0].localeCompare(b[0])))
    lines.push(`  ${label.padEnd(width)}  ${String(c.train).padStart(5)}  ${String(c.validation).padStart(10)}  ${String(c.test).padStart(4)}`);
  for (const s of skipped) lines.push(`skipped ${s.path}: ${s.reason}`);
  if (problems.length) lines.push(`${problems.length} problem${problems.length > 1 ? 's' : ''}:`, ...problems.map((p) => `  ${p}`));
  return { text: lines.join('\n'), ok: problems.length === 0 };
}

/**
 * What a real publish (or the coordinator) would refuse, found without uploading anything; and a
 * local model --backbone names, read and checked (what a real publish then uploads).
 */
async function planProblems(
  entries: readonly { path: string; label: string }[],
  o: PublishOptions,
  splits?: ReadonlyMap<string, Split>,
  classes: readonly string[] = [],
  ref?: BackboneFields,
): Promise<{ problems: string[]; model?: ModelUpload }> {
  const problems: string[] = [];
  let model: ModelUpload | undefined;
  try {
    const prepared = await prepareLocalModel(ref ?? backboneRequest(o.backbone ?? 'auto', o.overrides));
    if (prepared.problem) problems.push(prepared.problem);
    model = prepared.upload;
  } catch (err) {
    problems.push(`--backbone: ${(err as Error).message}`);
  }
  if (o.predict) return { problems: entries.length ? problems : [...problems, 'no images found'], model };
  const labelled = new Set(entries.map((e) => e.label));
  if (entries.length === 0) problems.push('no images found (a folder needs one sub-folder per class holding images; a list needs rows)');
  else if (labelled.size < 2) problems.push(`only ${labelled.size} class (${[...labelled][0]}): a classifier needs at least 2`);
  // A class folder with no image (or every one left out): the coordinator refuses a class it cannot learn.
  for (const c of classes) if (!labelled.has(c)) problems.push(`class "${c}" has no images (an empty folder: put photos in it, or remove it)`);
  if (splits) {
    const paths = new Set(entries.map((e) => e.path));
    const unknown = [...splits.keys()].filter((p) => !paths.has(p));
    if (unknown.length)
      problems.push(
        `--splits ${o.splitsFile} names ${unknown.length} file${unknown.length > 1 ? 's' : ''} not among the images: ${unknown.slice(0, 5).join(', ')}${unknown.length > 5 ? ', ...' : ''}`,
      );
  }
  return { problems, model };
}
