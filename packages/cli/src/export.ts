import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  AUDIT_FILE,
  MODEL_FILES,
  readModelFolder,
  writeModelFolder,
  type AuditReport,
  type EvaluationReport,
  type ModelFolder,
  type ModelCard,
} from '@graft/head';
import { jobStateName, readImage, readJob, readModelFile, type Bus } from '@graft/protocol';
import { backboneFilesOf, onnxSummary, retrainSummary, writeOnnx, writeRetrainGraph, type OnnxWritten, type RetrainWritten } from './model-exports.js';
import { renderReport, thumbnailDataUrl, thumbnailsWanted, writeWebBundle, type WebBundle } from '@graft/web';

export interface ExportOptions {
  /** Also write web/: the browser bundle and its try-it page. 'if-possible': a bundle that cannot be made is reported in the result, not thrown. */
  bundle?: boolean | 'if-possible';
  /** Model cache of the backbone the bundle needs. */
  cacheDir?: string;
  /** Told what is happening (for long steps). */
  onProgress?: (message: string) => void;
}

export interface ExportResult {
  folder: ModelFolder;
  /** The job's audit (audit.json), when it was audited. */
  audit?: AuditReport;
  /** Thumbnails in report.html, and those the image store could not give. */
  thumbnails: { shown: number; missing: number };
  bundle?: WebBundle;
  /** Why the bundle was not written (bundle: 'if-possible'). */
  bundleError?: string;
  /** model.onnx and labels.txt, or why there are none. */
  onnx: OnnxWritten;
  /** output_graph.pb and output_labels.txt for a GraphDef backbone, or why there are none. */
  retrainGraph?: RetrainWritten;
}

/** The model folder's files of a finished job, from the artifacts store (audit.json too when it has one). @throws Error when it has none. */
export async function readJobModel(bus: Bus, jobId: string): Promise<Record<string, Uint8Array>> {
  const files: Record<string, Uint8Array> = {};
  for (const name of MODEL_FILES) {
    const bytes = await readModelFile(bus, jobId, name);
    if (!bytes) {
      const s = await readJob(bus, jobId);
      if (!s) throw new Error(`no job ${jobId} (graft status lists the jobs)`);
      throw new Error(
        `job ${jobId} has no stored ${name}: it is ${jobStateName(s.state)}${s.error ? ` (${s.error})` : ''}; a job's model is stored when it is done (graft status ${jobId})`,
      );
    }
    files[name] = bytes;
  }
  const audit = await readModelFile(bus, jobId, AUDIT_FILE);
  if (audit) files[AUDIT_FILE] = audit;
  return files;
}

/** A model folder's audit.json (its bytes, when it has one) as an audit. @throws Error naming where it came from when it is not JSON. */
export function parseAudit(bytes: Uint8Array | undefined, where: string): AuditReport | undefined {
  if (!bytes) return undefined;
  try {
    return JSON.parse(new TextDecoder().decode(bytes)) as AuditReport;
  } catch (err) {
    throw new Error(`the ${AUDIT_FILE} of ${where} is not JSON: ${(err as Error).message}`, { cause: err });
  }
}

/** Thumbnails of these photos (thumbnailsWanted), read from the image store (an unreadable one is left out). */
export async function reportThumbnails(bus: Bus, shas: readonly string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const sha of shas) {
    const r = await readImage(bus, sha, 64 * 1024 * 1024);
    const url = r.ok ? await thumbnailDataUrl(r.bytes) : undefined;
    if (url) out.set(sha, url);
  }
  return out;
}

/** Writes a report.html (with its Audit section when there is an audit). */
export async function writeReport(
  path: string,
  report: EvaluationReport,
  card: ModelCard,
  thumbnails: ReadonlyMap<string, string>,
  audit?: AuditReport,
): Promise<void> {
  await writeFile(path, renderReport({ report, card, thumbnails, ...(audit ? { audit } : {}) }));
}

/** Writes DIR/web, the browser bundle, from the folder's backbone (see {@link backboneFilesOf}). */
export async function writeBundle(dir: string, folder: ModelFolder, cacheDir?: string, bus?: Bus, onNote?: (message: string) => void): Promise<WebBundle> {
  return writeWebBundle(join(dir, 'web'), folder, await backboneFilesOf(folder, cacheDir, bus, onNote));
}

/**
 * Writes a finished job's model folder to dir: the model files, report.html (thumbnails from
 * the image store) and, with `bundle`, web/.
 * @throws Error when the job has no stored model; BundleError when the bundle cannot be made.
 */
export async function exportModel(bus: Bus, jobId: string, dir: string, opts: ExportOptions = {}): Promise<ExportResult> {
  const files = await readJobModel(bus, jobId);
  await writeModelFolder(dir, files);
  const folder = await readModelFolder(dir);
  const audit = parseAudit(files[AUDIT_FILE], `job ${jobId}`);
  opts.onProgress?.('writing report.html');
  const wanted = thumbnailsWanted(folder.report, audit);
  const thumbs = await reportThumbnails(bus, wanted);
  await writeReport(join(dir, 'report.html'), folder.report, folder.card, thumbs, audit);
  opts.onProgress?.('writing model.onnx (backbone and head as one ONNX graph) and checking it against graft classify');
  const backbone = await backboneFilesOf(folder, opts.cacheDir, bus, opts.onProgress);
  const onnx = await writeOnnx(dir, folder, backbone, opts.cacheDir);
  const retrainGraph = await writeRetrainGraph(dir, folder, backbone, opts.cacheDir);
  const result: ExportResult = {
    folder,
    onnx,
    retrainGraph,
    ...(audit ? { audit } : {}),
    thumbnails: { shown: thumbs.size, missing: wanted.length - thumbs.size },
  };
  if (opts.bundle) {
    opts.onProgress?.('building the browser bundle (backbone and head as one model) and checking it against graft classify');
    try {
      result.bundle = await writeBundle(dir, folder, opts.cacheDir, bus, opts.onProgress);
    } catch (err) {
      if (opts.bundle !== 'if-possible') throw err;
      result.bundleError = (err as Error).message;
    }
  }
  return result;
}

/** What an export wrote, as --json says it (one shape: absent parts are null). */
export function exportJson(dir: string, r: ExportResult): Record<string, unknown> {
  const rep = r.folder.report;
  return {
    model: dir,
    classes: r.folder.card.classes,
    evaluation: { top1: rep.top1, topK: rep.topK, topKAccuracy: rep.topKAccuracy, testImages: rep.images },
    onnx: r.onnx,
    retrainGraph: r.retrainGraph ?? null,
    bundle: r.bundle
      ? { dir: r.bundle.dir, format: r.bundle.format, maxDifference: r.bundle.maxDifference }
      : r.bundleError
        ? { notWritten: r.bundleError }
        : null,
    audit: r.audit ? join(dir, 'audit.json') : null,
    thumbnails: r.thumbnails,
  };
}

/** What an export wrote, in lines a person reads. */
export function exportSummary(dir: string, r: ExportResult): string[] {
  const lines = [
    `model written to ${dir}`,
    `report: ${join(dir, 'report.html')}${r.thumbnails.missing ? ` (${r.thumbnails.missing} thumbnails not in the image store)` : ''}`,
  ];
  if (r.audit) lines.push(`audit: ${join(dir, 'audit.json')} (graft audit's findings; the report's Audit section shows them)`);
  lines.push(...onnxSummary(dir, r.onnx), ...retrainSummary(dir, r.retrainGraph));
  if (r.bundleError) lines.push(`browser bundle not written: ${r.bundleError} (graft export JOB ${dir} --bundle tries again)`);
  if (r.bundle) {
    const mb = (r.bundle.weightBytes / 1e6).toFixed(1);
    lines.push(
      `browser bundle: ${r.bundle.dir} (${r.bundle.format}, ${mb} MB; max difference from graft classify ${r.bundle.maxDifference.toExponential(1)})`,
      `try it: graft serve ${dir}${r.bundle.embedded ? `  (or open ${join(r.bundle.dir, 'index.html')})` : ''}`,
    );
  }
  return lines;
}
