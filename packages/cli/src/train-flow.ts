import { join, resolve } from 'node:path';
import { formatAudit, formatReport, formatSweep } from '@graft/head';
import { JobState, type Bus } from '@graft/protocol';
import { busOptions, graftHome, publishOptions, str, sweepGridOption, type Values } from './args.js';
import { startLocalCluster } from './cluster.js';
import { exportModel, exportSummary } from './export.js';
import { createLogger } from './logger.js';
import { count, followJob, jobDetails } from './jobs.js';
import { publishDataset, publishSweep } from './publish.js';
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
  const natsUrl = str(v, 'nats');
  const dataDir = resolve(str(v, 'data') ?? join(graftHome(), 'cluster'));
  const cluster = natsUrl
    ? undefined
    : await startLocalCluster({ dataDir, ...localWorkers(v), output: 'files', env: cacheEnv(v) });
  if (cluster) process.stderr.write(`started a local cluster (${count(cluster.children.length - 1, 'worker')}, data and logs in ${dataDir})\n`);
  void untilSignal().then(async () => {
    process.stderr.write('\ninterrupted: stopping (the job resumes when you run graft up or train again)\n');
    await cluster?.stop();
    process.exit(130);
  });
  try {
    return await withBus({ ...busOptions(v, 'graft-cli'), servers: cluster?.url ?? natsUrl }, async (bus) => {
      const p = await publishDataset(bus, dir, po);
      process.stderr.write(`job ${p.jobId}: ${count(p.scan.images.length, 'image')} in ${count(p.scan.classes.length, 'class')} (${p.scan.classes.join(', ')})\n`);
      return followAndExport(bus, p.jobId, out, v);
    });
  } finally {
    await cluster?.stop();
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
  const lines = ['', jobDetails(s, true), ...sweep, '', formatReport(r.folder.report), ...audit, '', ...exportSummary(out, r), `classify a photo with: graft classify ${out} PHOTO.jpg`];
  process.stdout.write(`${lines.join('\n')}\n`);
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
