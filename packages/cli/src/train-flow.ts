import { join, resolve } from 'node:path';
import { formatReport } from '@graft/head';
import { JobState } from '@graft/protocol';
import { busOptions, graftHome, int, publishOptions, str, type Values } from './args.js';
import { startLocalCluster } from './cluster.js';
import { exportModel, exportSummary } from './export.js';
import { createLogger } from './logger.js';
import { followJob, jobDetails } from './jobs.js';
import { publishDataset } from './publish.js';
import { backendFor, cacheDir, untilSignal, withBus } from './service.js';

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
    : await startLocalCluster({ dataDir, workers: int(v, 'workers', 1), output: 'files', workerArgs: str(v, 'backend') ? ['--backend', str(v, 'backend')!] : [] });
  if (cluster) process.stderr.write(`started a local cluster (${cluster.children.length - 1} workers, data and logs in ${dataDir})\n`);
  void untilSignal().then(async () => {
    process.stderr.write('\ninterrupted: stopping (the job resumes when you run graft up or train again)\n');
    await cluster?.stop();
    process.exit(130);
  });
  try {
    return await withBus({ ...busOptions(v, 'graft-cli'), servers: cluster?.url ?? natsUrl }, async (bus) => {
      const p = await publishDataset(bus, dir, po);
      process.stderr.write(`job ${p.jobId}: ${p.scan.images.length} images in ${p.scan.classes.length} classes (${p.scan.classes.join(', ')})\n`);
      const s = await followJob(bus, p.jobId);
      if (s.state !== JobState.JOB_STATE_DONE) {
        process.stderr.write(`${jobDetails(s, true)}\n`);
        return 1;
      }
      const bundle = !v['no-bundle'];
      if (bundle) await backendFor(v, createLogger({ toStderr: true, level: 'warn' }));
      const r = await exportModel(bus, p.jobId, out, { bundle, cacheDir: cacheDir(v), onProgress: (m) => process.stderr.write(`${m}\n`) });
      const lines = ['', jobDetails(s, true), '', formatReport(r.folder.report), '', ...exportSummary(out, r), `classify a photo with: graft classify ${out} PHOTO.jpg`];
      process.stdout.write(`${lines.join('\n')}\n`);
      return 0;
    });
  } finally {
    await cluster?.stop();
  }
}
