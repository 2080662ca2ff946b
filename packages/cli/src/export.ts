import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AUDIT_FILE, MODEL_FILES, readModelFolder, writeModelFolder, type AuditReport, type EvaluationReport, type ModelFolder, type ModelManifest } from '@graft/head';
import { getModel, jobStateName, readImage, readJob, readModelFile, type Bus } from '@graft/protocol';
import { USER_MODEL_POLICY, fetchBackbone, filesFromBundle } from '@graft/vision';
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
}

/** The model folder's files of a finished job, from the artifacts store (audit.json too when it has one). @throws Error when it has none. */
export async function readJobModel(bus: Bus, jobId: string): Promise<Record<string, Uint8Array>> {
  const files: Record<string, Uint8Array> = {};
  for (const name of MODEL_FILES) {
    const bytes = await readModelFile(bus, jobId, name);
    if (!bytes) {
      const s = await readJob(bus, jobId);
      if (!s) throw new Error(`no job ${jobId} (graft status lists the jobs)`);
      throw new Error(`job ${jobId} has no stored ${name}: it is ${jobStateName(s.state)}${s.error ? ` (${s.error})` : ''}; a job's model is stored when it is done (graft status ${jobId})`);
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
export async function writeReport(path: string, report: EvaluationReport, manifest: ModelManifest, thumbnails: ReadonlyMap<string, string>, audit?: AuditReport): Promise<void> {
  await writeFile(path, renderReport({ report, manifest, thumbnails, ...(audit ? { audit } : {}) }));
}

/**
 * Writes DIR/web, the browser bundle. The backbone comes from the cluster's model store (exactly the
 * files the workers ran, by fingerprint) when a bus is given and has it, else from its source (cached).
 */
export async function writeBundle(dir: string, folder: ModelFolder, cacheDir?: string, bus?: Bus, onNote?: (message: string) => void): Promise<WebBundle> {
  const fp = folder.manifest.backbone.fingerprint;
  const stored = bus
    ? await getModel(bus, fp).catch((err: unknown) => {
        onNote?.(`cannot read the model store (${(err as Error).message}): loading the backbone from its source`);
        return undefined;
      })
    : undefined;
  if (bus && !stored) onNote?.(`backbone ${fp} is not in the cluster's model store: loading it from its source`);
  // The model folder is the user's own: its backbone may be any file they can read.
  const files = stored ? filesFromBundle(stored.modelJson, stored.weights, `model store ${fp}`) : (await fetchBackbone(folder.manifest.backbone, { cacheDir, ...USER_MODEL_POLICY })).files;
  return writeWebBundle(join(dir, 'web'), folder, files);
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
  await writeReport(join(dir, 'report.html'), folder.report, folder.manifest, thumbs, audit);
  const result: ExportResult = { folder, ...(audit ? { audit } : {}), thumbnails: { shown: thumbs.size, missing: wanted.length - thumbs.size } };
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

/** What an export wrote, in lines a person reads. */
export function exportSummary(dir: string, r: ExportResult): string[] {
  const lines = [`model written to ${dir}`, `report: ${join(dir, 'report.html')}${r.thumbnails.missing ? ` (${r.thumbnails.missing} thumbnails not in the image store)` : ''}`];
  if (r.audit) lines.push(`audit: ${join(dir, 'audit.json')} (graft audit's findings; the report's Audit section shows them)`);
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
