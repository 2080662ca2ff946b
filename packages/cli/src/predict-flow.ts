import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { stat, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { encodeDenseHead, headLayers, readModelFolder, MAX_SUGGEST, MAX_TOP_K, type ModelFolder } from '@graft/head';
import {
  JobState,
  PREDICTION_PAGE,
  codecs,
  isImageStored,
  isValidJobId,
  publishOver,
  putImage,
  readManifestHeader,
  readPredictionPage,
  readSuggestions,
  type Bus,
  type JobStatus,
  type PredictOptions,
} from '@graft/protocol';
import type { BackboneFields } from '@graft/vision';
import { UsageError, busOptions, graftHome, int, publishOptions, str, type Values } from './args.js';
import { isImageListFile } from './image-list.js';
import { count, followJob, jobDetails, jobJson } from './jobs.js';
import { createLogger } from './logger.js';
import { createProgress } from './progress.js';
import { PredictionFile, csvCell, predictionFormat } from './prediction-file.js';
import { publishDataset, publishFresh, unfinishedTwin } from './publish.js';
import { backendFor, withBus } from './service.js';
import { untilSignal } from './signals.js';
import { localCluster } from './train-flow.js';

/*
 * graft predict MODEL_DIR FOLDER|LIST|JOB: a model's answers for photos nobody labelled, computed on
 * the cluster. The photos are published as a prediction job (uploaded once; photos whose vectors are
 * cached cost no backbone call), the workers extract, the coordinator applies the model's head, and
 * the answers stream into --out as they are stored. A rerun after a kill (of this command or of the
 * coordinator) follows the same job and appends only the rows --out lacks.
 */

/** The model's fingerprint in every answer: its head's weights and its classes, 16 hex characters. */
export function modelFingerprint(folder: ModelFolder): string {
  return createHash('sha256')
    .update(folder.weights)
    .update(JSON.stringify(folder.card.classes))
    .update(folder.card.backbone.fingerprint)
    .digest('hex')
    .slice(0, 16);
}

/**
 * The backbone request a model stands for: its catalogue name, or its address and the settings it
 * was resolved with (an input size only where a request may name one: a model's own smaller input
 * is its own). The cluster's answer is checked against the model's fingerprint all the same.
 */
export function backboneRefOf(folder: ModelFolder): BackboneFields {
  const b = folder.card.backbone;
  if (b.id !== 'custom') return { id: b.id, url: '' };
  const size = b.inputSize >= 16 && b.inputSize <= 2048 ? b.inputSize : undefined;
  return { id: 'custom', url: b.url, bottleneck: b.bottleneck || undefined, inputSize: size, preprocess: b.preprocess, inputNode: b.inputNode || undefined };
}

interface PredictArgs {
  out: string;
  top: number;
  minConfidence: number;
  suggest: number;
}

function predictArgs(v: Values): PredictArgs {
  const out = resolve(str(v, 'out') ?? 'predictions.csv');
  predictionFormat(out);
  const top = int(v, 'top', 1) ?? 3;
  if (top > MAX_TOP_K) throw new UsageError(`--top must be 1 to ${MAX_TOP_K}, got ${top}`);
  const raw = str(v, 'min-confidence');
  const minConfidence = raw === undefined ? 0 : Number(raw);
  if (!Number.isFinite(minConfidence) || minConfidence < 0 || minConfidence > 1)
    throw new UsageError(`--min-confidence must be a probability from 0 to 1, got ${JSON.stringify(raw)} (choose it from the report's coverage curve)`);
  const suggest = int(v, 'suggest', 0) ?? 0;
  if (suggest > MAX_SUGGEST) throw new UsageError(`--suggest must be at most ${MAX_SUGGEST}, got ${suggest}`);
  return { out, top, minConfidence, suggest };
}

/** What the photos are: a folder, a list, or another job's photos. @throws UsageError when it is none. */
async function sourceKind(source: string): Promise<'folder' | 'list' | 'job'> {
  const st = await stat(source).catch(() => undefined);
  if (st?.isDirectory()) return 'folder';
  if (st && isImageListFile(source)) return 'list';
  if (st) throw new UsageError(`${source} is a file: graft predict takes a folder of photos, a .csv, .tsv or .jsonl list, or a job id`);
  if (isValidJobId(source) && !source.includes('/')) return 'job';
  throw new UsageError(`no such folder, list or job: ${source}`);
}

/** graft predict. @returns the exit code. */
export async function predictPhotos(modelDir: string, source: string, v: Values): Promise<number> {
  const a = predictArgs(v);
  const kind = await sourceKind(source);
  const folder = await readModelFolder(modelDir).catch((err: unknown) => {
    throw new UsageError((err as Error).message);
  });
  await backendFor(v, createLogger({ toStderr: true, level: 'warn' }));
  const head = encodeDenseHead(await headLayers(folder));
  const headSha256 = createHash('sha256').update(head).digest('hex');
  const model = modelFingerprint(folder);
  const file = await PredictionFile.open(a.out, folder.card.classes, {
    model,
    source: kind === 'job' ? source : resolve(source),
    top: a.top,
    minConfidence: a.minConfidence,
  });
  if (file.resumedRows) process.stderr.write(`${a.out}: ${count(file.resumedRows, 'answer')} already written: going on from there\n`);
  const natsUrl = str(v, 'nats');
  const dataDir = resolve(str(v, 'data') ?? join(graftHome(), 'cluster'));
  const { cluster, url } = natsUrl ? { cluster: undefined, url: natsUrl } : await localCluster(dataDir, v, 'graft predict');
  void untilSignal().then(async () => {
    process.stderr.write(`\ninterrupted: stopping (run the same command again: it goes on from row ${file.counts.rows + 1})\n`);
    await file.close();
    await cluster?.stop();
    process.exit(130);
  });
  try {
    return await withBus({ ...busOptions(v, 'graft-cli'), servers: url }, async (bus) => {
      if (!(await isImageStored(bus, headSha256, head.byteLength))) await putImage(bus, { name: headSha256, description: `head of ${modelDir}` }, head);
      const options: PredictOptions = { headSha256, topK: a.top, suggest: a.suggest, model };
      const { jobId, total } = await publishPrediction(bus, folder, source, kind, options, v);
      const s = await streamAnswers(bus, jobId, total, folder, file);
      if (s.state !== JobState.JOB_STATE_DONE) {
        await file.close();
        process.stderr.write(`${jobDetails(s, true)}\n`);
        return 1;
      }
      await file.finish();
      const base = kind === 'folder' ? resolve(source) : kind === 'list' ? dirname(resolve(source)) : undefined;
      const toLabel = a.suggest ? await writeSuggestions(bus, jobId, folder, a.out, base) : undefined;
      const c = file.counts;
      const summary = {
        job: jobJson(s),
        out: a.out,
        model,
        rows: c.rows,
        answered: c.answered,
        unknown: c.unknown,
        failed: c.failed,
        minConfidence: a.minConfidence,
        ...(toLabel ? { toLabel: toLabel.path, suggested: toLabel.rows } : {}),
      };
      const lines = [
        `${count(c.rows, 'photo')}: ${c.answered} answered, ${c.unknown} unknown (below ${a.minConfidence}), ${c.failed} without an answer (extraction failed: graft status ${jobId} --failed)`,
        `answers: ${a.out}`,
        ...(toLabel
          ? [`to label next: ${toLabel.path} (${count(toLabel.rows, 'photo')}; fill in the label column, then graft train FOLDER --add ${toLabel.path})`]
          : []),
      ];
      if (v.json) {
        process.stderr.write(`${lines.join('\n')}\n`);
        process.stdout.write(`${JSON.stringify(summary)}\n`);
      } else process.stdout.write(`${lines.join('\n')}\n`);
      return 0;
    });
  } finally {
    await file.close(); // a no-op once finished; else what was written stays for the rerun
    await cluster?.stop();
  }
}

/** Publishes the prediction job (or finds the unfinished one of the same photos, model and options). */
async function publishPrediction(
  bus: Bus,
  folder: ModelFolder,
  source: string,
  kind: 'folder' | 'list' | 'job',
  options: PredictOptions,
  v: Values,
): Promise<{ jobId: string; total: number }> {
  const backboneRef = backboneRefOf(folder);
  if (kind !== 'job') {
    const p = await publishDataset(bus, source, { ...publishOptions(v), predict: { options, classes: folder.card.classes, backboneRef } });
    process.stderr.write(
      p.followed
        ? `job ${p.jobId}: following the unfinished prediction of these photos by this model\n`
        : `job ${p.jobId}: ${count(p.scan.images.length, 'photo')} to classify with ${folder.card.classes.length} classes\n`,
    );
    return { jobId: p.jobId, total: p.scan.images.length };
  }
  const old = await readManifestHeader(bus, source);
  if (!old) throw new Error(`${source}: no such folder or list, and no job of that id on this cluster (graft status lists the jobs)`);
  const header = codecs.manifest.create({
    ...old,
    images: [],
    jobId: '',
    idNonce: '',
    name: `${old.name} (predict)`,
    classes: folder.card.classes,
    backbone: backboneRef,
    training: {},
    predict: options,
    createdAtMs: Date.now(),
  });
  const total = Number(old.imageCount) || old.images.length;
  const twin = await unfinishedTwin(bus, header);
  if (twin) {
    process.stderr.write(`job ${twin}: following the unfinished prediction of job ${source}'s photos by this model\n`);
    return { jobId: twin, total };
  }
  const jobId = await publishFresh(bus, (idNonce) => publishOver(bus, old, { ...header, idNonce }));
  process.stderr.write(`job ${jobId}: job ${source}'s ${count(total, 'photo')} to classify with ${folder.card.classes.length} classes\n`);
  return { jobId, total };
}

/**
 * Follows the job and appends its answers to the file as their pages are stored, from the first
 * row the file lacks. @returns the job's final record.
 */
async function streamAnswers(bus: Bus, jobId: string, total: number, folder: ModelFolder, file: PredictionFile): Promise<JobStatus> {
  const pages = Math.ceil(total / PREDICTION_PAGE);
  let page = Math.floor(file.resumedRows / PREDICTION_PAGE);
  let skip = file.resumedRows % PREDICTION_PAGE;
  let latest: JobStatus | undefined;
  let ended = false;
  const followed = followJob(bus, jobId, { onUpdate: (s) => (latest = s) }).then((s) => {
    latest = s;
    ended = true;
  });
  const bar = createProgress('answers');
  const want = folder.card.backbone.fingerprint;
  while (page < pages) {
    const got = latest?.backbone?.fingerprint;
    if (got && got !== want)
      throw new Error(`the cluster resolved the model's backbone to ${got}, not ${want} (the model was trained on): its answers would be wrong`);
    const p = await readPredictionPage(bus, jobId, page);
    if (p) {
      await file.write(p.rows.slice(skip));
      skip = 0;
      page++;
      bar.update(Math.min(total, page * PREDICTION_PAGE), total);
      continue;
    }
    if (ended) {
      if (latest?.state === JobState.JOB_STATE_DONE)
        throw new Error(`job ${jobId} is done but its answers from row ${page * PREDICTION_PAGE + 1} are not stored`);
      break;
    }
    await sleep(500);
  }
  bar.done();
  await followed;
  return latest!;
}

/**
 * to-label.csv beside --out: the suggested photos, the head's guess prefilled as their label, local
 * photos by absolute path (so `graft train DIR --add to-label.csv` finds them wherever it runs from).
 * @returns where, and how many.
 */
async function writeSuggestions(bus: Bus, jobId: string, folder: ModelFolder, out: string, base?: string): Promise<{ path: string; rows: number }> {
  const s = await readSuggestions(bus, jobId);
  if (!s) throw new Error(`job ${jobId} is done but stored no suggestions`);
  const path = join(dirname(out), 'to-label.csv');
  if (existsSync(path)) process.stderr.write(`${path} exists: replaced\n`);
  const rows = s.rows.map((r) =>
    [
      base && !/^https?:\/\//i.test(r.path) ? resolve(base, r.path) : r.path,
      folder.card.classes[r.guess],
      folder.card.classes[r.guess],
      r.probability.toFixed(4),
      r.margin.toFixed(4),
    ]
      .map((c) => csvCell(String(c)))
      .join(','),
  );
  await writeFile(path, `path,label,guess,probability,margin\n${rows.join('\n')}${rows.length ? '\n' : ''}`);
  return { path, rows: rows.length };
}
