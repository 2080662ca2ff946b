import { resolve } from 'node:path';
import { JobState, listJobs, readJob } from '@graft/protocol';
import { NATS_HELP, NATS_OPTIONS, PUBLISH_HELP, PUBLISH_OPTIONS, UsageError, busOptions, parse, publishOptions, str } from '../args.js';
import { exportJson, exportModel, exportSummary } from '../export.js';
import { count, followJob, jobDetails, jobJson, jobLine } from '../jobs.js';
import { createLogger } from '../logger.js';
import { planDataset, publishDataset } from '../publish.js';
import { backendFor, cacheDir, withBus } from '../service.js';
import { sweepJob } from '../train-flow.js';
import { BACKEND_HELP, CACHE_HELP } from './command.js';
import type { Command } from './command.js';

/* Commands about jobs on a running cluster: graft publish, status, export, sweep. */

const publish: Command = {
  summary: 'upload a class-per-folder tree or an image list (CSV, TSV, JSONL) and start a job',
  usage: `graft publish DIR|LIST [options]

DIR holds one folder per class (DIR/cat/*.jpg, DIR/dog/*.jpg, ...); LIST is a .csv, .tsv or
.jsonl file naming images (paths relative to it, absolute paths or http(s) URLs) with labels and
optional splits. Images are uploaded once (by content hash; URLs are downloaded by this command),
the manifest is published, and the job id is printed on stdout.

${PUBLISH_HELP}
  --json              one JSON document on stdout: the job id, what was uploaded and skipped (and the
                      finished job's record with --follow)
  --follow                  watch the job until it ends
${NATS_HELP}`,
  options: { ...NATS_OPTIONS, ...PUBLISH_OPTIONS, follow: { type: 'boolean' }, json: { type: 'boolean' } },
  async run(argv) {
    const { values: v, positionals } = parse(argv, this.options);
    if (positionals.length !== 1) throw new UsageError('publish takes exactly one folder or list file');
    const po = publishOptions(v);
    if (v['dry-run']) {
      const plan = await planDataset(positionals[0], po);
      process.stdout.write(`${plan.text}\n`);
      return plan.ok ? 0 : 1;
    }
    return withBus(busOptions(v, 'graft-cli'), async (bus) => {
      const p = await publishDataset(bus, positionals[0], po);
      process.stderr.write(
        p.followed
          ? `an unfinished job of these photos and options is under way: ${p.jobId} (--new-job publishes another)\n`
          : `published ${count(p.scan.images.length, 'image')} in ${count(p.scan.classes.length, 'class')}${p.scan.skipped.length ? `, skipped ${count(p.scan.skipped.length, 'file')}` : ''}\n`,
      );
      const published = {
        jobId: p.jobId,
        followed: Boolean(p.followed),
        images: p.scan.images.length,
        classes: p.scan.classes,
        skipped: p.scan.skipped,
        uploaded: p.uploaded,
        alreadyStored: p.alreadyStored,
        shrunk: p.shrunk,
      };
      if (!v.json) process.stdout.write(`${p.jobId}\n`);
      if (!v.follow) {
        if (v.json) process.stdout.write(`${JSON.stringify({ ...published, job: null })}\n`);
        return 0;
      }
      const s = await followJob(bus, p.jobId);
      if (v.json) process.stdout.write(`${JSON.stringify({ ...published, job: jobJson(s) })}\n`);
      else process.stdout.write(`${jobDetails(s)}\n`);
      return s.state === JobState.JOB_STATE_DONE ? 0 : 1;
    });
  },
};

const status: Command = {
  summary: 'show jobs, or one job; --follow streams its progress',
  usage: `graft status [JOB] [--follow] [--json] [--failed]

  --follow      stream progress until the job ends
  --json        machine-readable output: one JSON document; with --follow, one JSON object per line
                as the job moves (JSON Lines), the last one its end
  --failed      list every image that failed, with its reason
${NATS_HELP}`,
  options: { ...NATS_OPTIONS, follow: { type: 'boolean' }, json: { type: 'boolean' }, failed: { type: 'boolean' } },
  async run(argv) {
    const { values: v, positionals } = parse(argv, this.options);
    return withBus(busOptions(v, 'graft-cli'), async (bus) => {
      if (!positionals[0]) {
        const jobs = await listJobs(bus, (id, err) => process.stderr.write(`job ${id}: record unreadable (${(err as Error).message}); left out\n`));
        if (v.json) process.stdout.write(`${JSON.stringify(jobs.map(jobJson), null, 2)}\n`);
        else process.stdout.write(jobs.length ? `${jobs.map(jobLine).join('\n')}\n` : 'no jobs yet\n');
        return 0;
      }
      const id = positionals[0];
      let s = await readJob(bus, id);
      if (!s) {
        process.stderr.write(`graft status: no job ${id} (graft status lists the jobs)\n`);
        return 1;
      }
      if (v.follow)
        s = await followJob(bus, id, { progress: !v.json, onUpdate: v.json ? (x) => process.stdout.write(`${JSON.stringify(jobJson(x))}\n`) : undefined });
      if (v.json) {
        if (!v.follow) process.stdout.write(`${JSON.stringify(jobJson(s), null, 2)}\n`);
      } else process.stdout.write(`${jobDetails(s, Boolean(v.failed))}\n`);
      return s.state === JobState.JOB_STATE_FAILED ? 1 : 0;
    });
  },
};

const exportCmd: Command = {
  summary: "write a finished job's model to a folder (with report.html, and web/ with --bundle)",
  usage: `graft export JOB DIR [--bundle]

Writes model.json + weights.bin (the head, a TF.js layers model taking raw bottleneck
vectors), graft.json (labels, backbone and preprocessing), report.json (test accuracy,
per-class accuracy, confusion matrix, training history, misclassified test images) and
report.html (the same, to look at: thumbnails from the image store). graft classify DIR IMAGE
uses the folder without NATS.

  --bundle            also write DIR/web: backbone and head as one TF.js model for browsers,
                      labels.json and a try-it page (graft serve DIR)
  --json              one JSON document on stdout: what was written (model.onnx, the bundle, the evaluation)
${BACKEND_HELP}
${CACHE_HELP}
${NATS_HELP}`,
  options: { ...NATS_OPTIONS, bundle: { type: 'boolean' }, json: { type: 'boolean' }, backend: { type: 'string' }, 'cache-dir': { type: 'string' } },
  async run(argv) {
    const { values: v, positionals } = parse(argv, this.options);
    if (positionals.length !== 2) throw new UsageError('export takes JOB and DIR');
    if (v.bundle) await backendFor(v, createLogger({ toStderr: true, level: 'warn' }));
    const r = await withBus(busOptions(v, 'graft-cli'), (bus) =>
      exportModel(bus, positionals[0], positionals[1], { bundle: Boolean(v.bundle), cacheDir: cacheDir(v), onProgress: (m) => process.stderr.write(`${m}\n`) }),
    );
    process.stderr.write(`${exportSummary(positionals[1], r).join('\n')}\n`);
    if (v.json) process.stdout.write(`${JSON.stringify(exportJson(positionals[1], r))}\n`);
    return 0;
  },
};

const sweep: Command = {
  summary: "train a grid of heads on a finished job's cached vectors and export the best",
  usage: `graft sweep JOB [--sweep-grid FILE] [--out DIR] [--nats URL]

Publishes JOB's images again as a new job that sweeps heads (no upload, no backbone call: the
vectors are cached), picks the head with the best validation accuracy (ties: lower validation
loss), prints the whole table and writes the winner's model folder (report.json and report.html
list every head).

  --sweep-grid FILE   the grid as JSON (default grid: see README)
  --out DIR           model folder (default ./graft-model)
  --no-bundle         skip DIR/web
  --json              one JSON document on stdout: the job's record and what was written
${BACKEND_HELP}
${CACHE_HELP}
${NATS_HELP}`,
  options: {
    ...NATS_OPTIONS,
    'sweep-grid': { type: 'string' },
    out: { type: 'string' },
    'no-bundle': { type: 'boolean' },
    json: { type: 'boolean' },
    backend: { type: 'string' },
    'cache-dir': { type: 'string' },
  },
  async run(argv) {
    const { values: v, positionals } = parse(argv, this.options);
    if (positionals.length !== 1) throw new UsageError('sweep takes one JOB');
    return sweepJob(positionals[0], v, resolve(str(v, 'out') ?? 'graft-model'));
  },
};

export { publish, status, exportCmd, sweep };
