import { join, resolve } from 'node:path';
import { formatReport, readModelFolder } from '@graft/head';
import { JobState } from '@graft/protocol';
import { busOptions, graftHome, int, publishOptions, str, type Values } from './args.js';
import { startLocalCluster } from './cluster.js';
import { exportModel } from './export.js';
import { followJob, jobDetails } from './jobs.js';
import { publishDataset } from './publish.js';
import { untilSignal, withBus } from './service.js';

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
      await exportModel(bus, p.jobId, out);
      const folder = await readModelFolder(out);
      const lines = ['', jobDetails(s, true), '', formatReport(folder.report), '', `model written to ${out}`, `classify a photo with: graft classify ${out} PHOTO.jpg`];
      process.stdout.write(`${lines.join('\n')}\n`);
      return 0;
    });
  } finally {
    await cluster?.stop();
  }
}
