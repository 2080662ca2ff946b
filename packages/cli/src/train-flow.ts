import { readdir, stat } from 'node:fs/promises';
import { extname, join, resolve } from 'node:path';
import { IMAGE_EXTENSIONS, backboneRequest } from '@graft/vision';
import { formatAudit, formatReport, formatSweep } from '@graft/head';
import { JobState, type Bus } from '@graft/protocol';
import { UsageError, busOptions, graftHome, publishOptions, str, sweepGridOption, type Values } from './args.js';
import { isImageListFile } from './image-list.js';
import { startLocalCluster, type LocalCluster } from './cluster.js';
import { ClusterRunning, runningCluster, type DataLock } from './data-lock.js';
import { exportJson, exportModel, exportSummary } from './export.js';
import { createLogger } from './logger.js';
import { count, followJob, jobDetails, jobJson } from './jobs.js';
import { publishDataset, publishSweep, type PublishOptions } from './publish.js';
import { backendFor, cacheDir, cacheEnv, withBus } from './service.js';
import { untilSignal } from './signals.js';
import { localWorkers } from './commands/command.js';

/**
 * The one-command path: publish a folder, follow the job, export the model and print its
 * evaluation, on the cluster --nats names or on a local one started for the run.
 * @returns the exit code (0 when the job is done and exported).
 */
export async function trainFolder(dir: string, v: Values, out: string): Promise<number> {
  const po = publishOptions(v);
  await preflight(dir, po.backbone, po.overrides, out);
  const natsUrl = str(v, 'nats');
  const dataDir = resolve(str(v, 'data') ?? join(graftHome(), 'cluster'));
  const { cluster, url } = natsUrl ? { cluster: undefined, url: natsUrl } : await localCluster(dataDir, v);
  void untilSignal().then(async () => {
    process.stderr.write('\ninterrupted: stopping (the job resumes when you run graft up or train again)\n');
    await cluster?.stop();
    process.exit(130);
  });
  try {
    return await withBus({ ...busOptions(v, 'graft-cli'), servers: url }, async (bus) => {
      const p = await publishDataset(bus, dir, po);
      const lost = lostBeforeExtraction(p);
      process.stderr.write(
        p.followed
          ? `job ${p.jobId}: following the unfinished job of these photos and options (--new-job publishes another)\n`
          : `job ${p.jobId}: ${count(p.scan.images.length, 'image')} in ${count(p.scan.classes.length, 'class')} (${p.scan.classes.join(', ')})\n`,
      );
      const code = await followAndExport(bus, p.jobId, out, v);
      if (code === 0 && lost) {
        process.stderr.write(`warning: ${lost}\n`);
        return 3;
      }
      return code;
    });
  } finally {
    await cluster?.stop();
  }
}

/** Over this share of a dataset's files left out before extraction, a finished run exits 3. */
const LOST_SHARE = 0.1;

/** A job that lost more than LOST_SHARE of its photos before extraction (files that were not images, URLs that failed): why, or undefined. */
export function lostBeforeExtraction(p: { scan: { images: unknown[]; skipped: unknown[] }; followed?: boolean }): string | undefined {
  const all = p.scan.images.length + p.scan.skipped.length;
  if (p.followed || !all || p.scan.skipped.length / all <= LOST_SHARE) return undefined;
  return `${p.scan.skipped.length} of ${all} files (${((100 * p.scan.skipped.length) / all).toFixed(0)} %) were left out before extraction (listed above): the model learnt from the rest; exit code 3`;
}

/**
 * What can be told before anything starts (a cluster, an upload), as usage errors: --out names a
 * file, the source is a file that is no list, a folder with fewer than two class folders holding
 * images, a class folder with none, a backbone graft does not know.
 * @throws UsageError naming the fix.
 */
async function preflight(dir: string, backbone: string | undefined, overrides: PublishOptions['overrides'], out: string): Promise<void> {
  const outStat = await stat(out).catch(() => undefined);
  if (outStat && !outStat.isDirectory())
    throw new UsageError(`--out ${out} is a file: name a folder for the model (graft export JOB DIR writes a finished job's model later)`);
  try {
    backboneRequest(backbone ?? 'auto', overrides);
  } catch (err) {
    throw new UsageError(`--backbone: ${(err as Error).message}`);
  }
  if (isImageListFile(dir)) return; // a list's rows are checked, with their lines, before any upload
  const source = await stat(dir).catch(() => undefined);
  if (!source) throw new UsageError(`no such folder: ${dir}`);
  if (!source.isDirectory()) throw new UsageError(`${dir} is a file: graft train takes a folder (one sub-folder per class) or a .csv, .tsv or .jsonl list`);
  const classes = (await readdir(dir, { withFileTypes: true })).filter((e) => e.isDirectory() && !e.name.startsWith('.'));
  const empty: string[] = [];
  for (const c of classes) if (!(await holdsImage(join(dir, c.name)))) empty.push(c.name);
  if (classes.length - empty.length < 2)
    throw new UsageError(
      `${dir} has ${classes.length - empty.length} class folder${classes.length - empty.length === 1 ? '' : 's'} with images: a classifier needs at least 2 (one sub-folder per class)`,
    );
  if (empty.length)
    throw new UsageError(
      `class folder${empty.length > 1 ? 's' : ''} ${empty.map((e) => JSON.stringify(e)).join(', ')} ${empty.length > 1 ? 'have' : 'has'} no images: put photos in ${empty.length > 1 ? 'them' : 'it'}, or remove ${empty.length > 1 ? 'them' : 'it'}`,
    );
}

/** Whether a folder holds an image file, at any depth (by extension: the scan checks the bytes). */
async function holdsImage(dir: string): Promise<boolean> {
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true }))
    if (e.isFile() && IMAGE_EXTENSIONS.has(extname(e.name).toLowerCase())) return true;
  return false;
}

/**
 * The local cluster a run uses: the one already running on the data folder (graft up, another
 * train: one cluster per data folder, the same cache), else one started for the run.
 */
export async function localCluster(dataDir: string, v: Values, command = 'graft train'): Promise<{ cluster?: LocalCluster; url: string }> {
  const use = (held: DataLock) => {
    process.stderr.write(`using the cluster already running on ${dataDir} (${held.command}, pid ${held.pid}, NATS at ${held.url})\n`);
    return { url: held.url };
  };
  const running = await runningCluster(dataDir);
  if (running?.url) return use(running);
  try {
    const cluster = await startLocalCluster({ dataDir, ...localWorkers(v), output: 'files', env: cacheEnv(v), command });
    process.stderr.write(`started a local cluster (${count(cluster.children.length - 1, 'worker')}, data and logs in ${dataDir})\n`);
    return { cluster, url: cluster.url };
  } catch (err) {
    if (err instanceof ClusterRunning && err.held.url) return use(err.held);
    throw err;
  }
}

/**
 * Follows a job to its end, then exports its model (with the browser bundle unless --no-bundle)
 * and prints the evaluation. @returns the exit code.
 */
export async function followAndExport(bus: Bus, jobId: string, out: string, v: Values): Promise<number> {
  const s = await followJob(bus, jobId);
  if (s.state !== JobState.JOB_STATE_DONE) {
    process.stderr.write(`${jobDetails(s, true)}\n`);
    return 1;
  }
  const bundle = !v['no-bundle'];
  if (bundle) await backendFor(v, createLogger({ toStderr: true, level: 'warn' }));
  // The model is what the user asked for; a bundle that cannot be made is said, not fatal.
  const r = await exportModel(bus, jobId, out, { bundle: bundle && 'if-possible', cacheDir: cacheDir(v), onProgress: (m) => process.stderr.write(`${m}\n`) });
  const sweep = r.folder.report.sweep ? ['', formatSweep(r.folder.report.sweep)] : [];
  const audit = r.audit ? ['', formatAudit(r.audit)] : [];
  const lines = [
    '',
    jobDetails(s, true),
    ...sweep,
    '',
    formatReport(r.folder.report),
    ...audit,
    '',
    ...exportSummary(out, r),
    `classify a photo with: graft classify ${out} PHOTO.jpg`,
  ];
  // With --json, stdout is one document; the summary a person reads goes to stderr.
  if (v.json) {
    process.stderr.write(`${lines.join('\n')}\n`);
    process.stdout.write(`${JSON.stringify({ job: jobJson(s), ...exportJson(out, r) })}\n`);
  } else process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}

/** graft sweep JOB: the finished job's images again, as a sweep over its cached vectors. */
export async function sweepJob(jobId: string, v: Values, out: string): Promise<number> {
  return withBus(busOptions(v, 'graft-cli'), async (bus) => {
    const id = await publishSweep(bus, jobId, sweepGridOption(v));
    process.stderr.write(`job ${id}: a sweep of heads over job ${jobId}'s vectors\n`);
    return followAndExport(bus, id, out, v);
  });
}
