import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { DEFAULT_AUDIT_FOLDS, auditProblem, fixesOf, formatAudit, formatFixes, pickTrainOptions, type ModelCard } from '@graft/head';
import { JobState, imagePages, readManifestHeader, readModelFile, type Bus, type DatasetManifest, type TrainingOptions } from '@graft/protocol';
import { NATS_HELP, NATS_OPTIONS, UsageError, busOptions, int, parse, str, type Values } from '../args.js';
import { exportModel, exportSummary } from '../export.js';
import { followJob, jobDetails } from '../jobs.js';
import { publishAudit } from '../publish.js';
import { withBus } from '../service.js';
import type { Command } from './command.js';

/* graft audit JOB: the job's photos audited from their cached vectors, on the cluster. */

/** The winning head's options of a sweep's job (its model card, graft.json), so an audit does not sweep again: all but its epoch count, which the job's options keep. */
async function winnerOptions(bus: Bus, jobId: string): Promise<TrainingOptions | undefined> {
  const bytes = await readModelFile(bus, jobId, 'graft.json');
  if (!bytes) return undefined;
  const { epochs: _trained, ...options } = pickTrainOptions((JSON.parse(new TextDecoder().decode(bytes)) as ModelCard).training);
  return { weightDecay: 0, labelSmoothing: 0, hiddenUnits: 0, ...options };
}

/** Why a job's manifest is too small to audit (counted from its photos, a page at a time: failed ones can only make it smaller). */
async function tooSmall(bus: Bus, m: DatasetManifest, folds: number): Promise<string | undefined> {
  const counts = new Map<string, number>();
  for await (const page of imagePages(bus, m)) for (const i of page) counts.set(i.label, (counts.get(i.label) ?? 0) + 1);
  return auditProblem(
    m.classes,
    m.classes.map((c) => counts.get(c) ?? 0),
    folds,
  );
}

async function runAudit(bus: Bus, jobId: string, v: Values): Promise<number> {
  const folds = int(v, 'folds', 2) ?? DEFAULT_AUDIT_FOLDS;
  if (folds > 20) throw new UsageError(`--folds must be from 2 to 20, got ${folds}`);
  const old = await readManifestHeader(bus, jobId);
  if (!old) throw new Error(`no job ${jobId} (graft status lists the jobs)`);
  const small = await tooSmall(bus, old, folds);
  if (small) throw new Error(`job ${jobId} is ${small}`);
  const winner = old.training?.sweep ? await winnerOptions(bus, jobId) : undefined;
  const a = await publishAudit(bus, old, folds, winner);
  process.stderr.write(
    `job ${a.jobId}: ${a.existed ? 'following the audit already published for' : 'auditing'} job ${jobId} (cached vectors, ${folds} folds)\n`,
  );
  const s = await followJob(bus, a.jobId);
  if (s.state !== JobState.JOB_STATE_DONE) {
    process.stderr.write(`${jobDetails(s, true)}\n`);
    return 1;
  }
  const out = resolve(str(v, 'out') ?? `audit-${jobId}`);
  const r = await exportModel(bus, a.jobId, out, { onProgress: (m) => process.stderr.write(`${m}\n`) });
  if (!r.audit) {
    process.stderr.write(`job ${a.jobId} has no audit: ${s.warning || 'it was not audited'}\n`);
    return 1;
  }
  const fixesFile = str(v, 'write-fixes');
  if (fixesFile) await writeFile(fixesFile, formatFixes(fixesOf(r.audit)));
  if (v.json) process.stdout.write(`${JSON.stringify(r.audit, null, 2)}\n`);
  else {
    const lines = [formatAudit(r.audit), '', ...exportSummary(out, r)];
    if (fixesFile) lines.push(`fixes: ${fixesFile} (edit it, then graft train DIR --exclude ${fixesFile} or --relabel ${fixesFile})`);
    process.stdout.write(`${lines.join('\n')}\n`);
  }
  return 0;
}

export const audit: Command = {
  summary: "find likely label errors, duplicates, split leaks and outliers in a job's photos (cached vectors only)",
  usage: `graft audit JOB [--folds K] [--out DIR] [--write-fixes FILE] [--json] [--nats URL]

Publishes JOB's photos again as a job that trains its head and audits them from the cached vectors
(no upload, no backbone call), then writes the audit's model folder (audit.json, report.html with an
Audit section) and prints a summary. Running it again follows the same audit job.
  Label errors: K heads, each trained (with JOB's options) on all folds but one, give every photo
    out-of-sample probabilities; as many photos as labels are estimated wrong are flagged, those
    least likely to be their given class, each with a suggested label (docs/audit.md).
  Duplicates: the same content under two paths, and near-duplicates by cosine similarity.
  Split leaks: duplicates across train/validation/test, with test accuracy without them.
  Outliers: photos far from every photo of their class.

  --folds K           folds (default 10, 2 to 20); a class needs at least max(5, K) photos
  --out DIR           the audit's model folder (default ./audit-JOB)
  --write-fixes FILE  a CSV (path, given, suggested, reason) to edit and pass to
                      graft train DIR --exclude FILE or --relabel FILE
  --json              the audit (audit.json) on stdout, one JSON document
${NATS_HELP}`,
  options: { ...NATS_OPTIONS, folds: { type: 'string' }, out: { type: 'string' }, 'write-fixes': { type: 'string' }, json: { type: 'boolean' } },
  async run(argv) {
    const { values: v, positionals } = parse(argv, this.options);
    if (positionals.length !== 1) throw new UsageError('audit takes one JOB');
    return withBus(busOptions(v, 'graft-cli'), (bus) => runAudit(bus, positionals[0], v));
  },
};
