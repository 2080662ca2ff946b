import { JobState, codecs, errorCodeName, isTerminal, jobStateName, pb, watchJob, type Bus, type JobStatus } from '@graft/protocol';
import { createProgress, type Progress } from './progress.js';

/* How jobs look to a person: lines, blocks and progress bars over protocol's job records. */

/**
 * A plain-object view of a job record, for --json: every field present, zeros included (one shape,
 * whatever the job's counts), 64-bit numbers as numbers, enums by name.
 */
export function jobJson(s: JobStatus): Record<string, unknown> {
  const o = pb.JobStatus.toObject(codecs.jobStatus.create(s) as unknown as InstanceType<typeof pb.JobStatus>, {
    defaults: true,
    longs: Number,
    enums: String,
    arrays: true,
    objects: true,
  });
  return { ...o, state: jobStateName(s.state) };
}

const pct = (x: number | null | undefined) => `${(100 * (x ?? 0)).toFixed(1)}%`;

/** `1 image`, `2 images`, `3 classes`: a count with its noun. */
export function count(n: number, noun: string): string {
  return `${n} ${n === 1 ? noun : /(s|sh|ch|x)$/.test(noun) ? `${noun}es` : `${noun}s`}`;
}

/** One line per job: id, state, counts, accuracy. */
export function jobLine(s: JobStatus): string {
  const c = s.counts ?? {};
  const parts = [
    s.jobId,
    jobStateName(s.state).padEnd(10),
    `${s.name}`,
    `images ${c.total ?? 0} (cached ${c.cached ?? 0}, extracted ${c.extracted ?? 0}, failed ${c.failed ?? 0})`,
  ];
  if (s.training?.epoch) parts.push(`epoch ${s.training.epoch} loss ${(s.training.loss ?? 0).toFixed(3)} val ${pct(s.training.valAccuracy)}`);
  if (s.sweep?.heads) parts.push(`sweep ${s.sweep.headsDone}/${s.sweep.heads} heads, best val ${pct(s.sweep.bestValAccuracy)}`);
  if (s.evaluation?.testImages) parts.push(`test top-1 ${pct(s.evaluation.top1)}`);
  if (s.error) parts.push(`error: ${s.error}`);
  return parts.join('  ');
}

/** A readable block about one job. */
export function jobDetails(s: JobStatus, withFailures = false): string {
  const c = s.counts ?? {};
  const lines = [
    `job       ${s.jobId} (${s.name})`,
    `state     ${jobStateName(s.state)}`,
    `backbone  ${s.backbone?.id ? `${s.backbone.id} (${s.backbone.dim}-d, fingerprint ${s.backbone.fingerprint})${s.runtimes?.length ? `, run on ${s.runtimes.join(', ')}` : ''}` : '(not resolved yet)'}`,
    `classes   ${s.classes.join(', ')}`,
    `images    ${c.total ?? 0}: ${c.cached ?? 0} cached, ${c.extracted ?? 0} extracted, ${c.failed ?? 0} failed${s.skipped ? `; ${s.skipped} files skipped at publish` : ''}`,
  ];
  const a = s.augmented;
  if (a?.total) lines.push(`augmented ${a.total} copies of training images: ${a.cached ?? 0} cached, ${a.extracted ?? 0} extracted, ${a.failed ?? 0} failed`);
  if (s.training?.epoch)
    lines.push(
      `training  epoch ${s.training.epoch}/${s.training.epochs}: loss ${(s.training.loss ?? 0).toFixed(4)}, train ${pct(s.training.accuracy)}, validation ${pct(s.training.valAccuracy)}`,
    );
  if (s.sweep?.heads) lines.push(`sweep     ${s.sweep.headsDone}/${count(s.sweep.heads, 'head')} trained, best validation ${pct(s.sweep.bestValAccuracy)}`);
  if (s.evaluation?.testImages)
    lines.push(
      `test      top-1 ${pct(s.evaluation.top1)}, top-${s.evaluation.topK || 5} ${pct(s.evaluation.topKAccuracy)} on ${s.evaluation.testImages} images (${s.evaluation.trainImages} train, ${s.evaluation.validationImages} validation)`,
    );
  if (s.warning) lines.push(`warning   ${s.warning}`);
  if (s.error) lines.push(`error     ${s.error}`);
  if (s.failures.length) {
    const omitted = s.failuresOmitted ?? 0;
    if (withFailures) {
      lines.push(`failed images (${s.failures.length + omitted}):`);
      for (const f of s.failures) lines.push(`  ${f.path}${f.source ? ` (${f.source})` : ''}: ${errorCodeName(f.code)}: ${f.message}`);
      if (omitted) lines.push(`  ... and ${omitted} more (the first ${s.failures.length} are listed; see the coordinator's log for all)`);
    } else lines.push(`failed    ${s.failures.length + omitted} images (graft status ${s.jobId} --failed lists them)`);
  }
  return lines.join('\n');
}

/**
 * Watches a job's record until it ends, showing extraction and training progress.
 * @returns the final record.
 */
export async function followJob(bus: Bus, jobId: string, opts: { progress?: boolean; onUpdate?: (s: JobStatus) => void } = {}): Promise<JobStatus> {
  const show = opts.progress ?? true;
  let extraction: Progress | undefined;
  let training: Progress | undefined;
  let lastState = -1;
  let extractionShown = false;
  let latest: JobStatus | undefined;
  let movedAt = Date.now();
  // Nothing moved for a while: say what the follow waits for, never a silent hang.
  const quiet = setInterval(() => {
    if (!show || Date.now() - movedAt < QUIET_MS) return;
    process.stderr.write(`job ${jobId}: ${waitingFor(latest)}\n`);
    movedAt = Date.now();
  }, 1000);
  try {
    return await follow();
  } finally {
    clearInterval(quiet);
  }
  async function follow(): Promise<JobStatus> {
    for await (const s of watchJob(bus, jobId)) {
      latest = s;
      movedAt = Date.now();
      opts.onUpdate?.(s);
      if (show) {
        if (s.state !== lastState) {
          if (lastState !== -1 || s.state) process.stderr.write(`job ${jobId}: ${jobStateName(s.state)}\n`);
          if (s.warning && lastState < 2) process.stderr.write(`warning: ${s.warning}\n`);
          lastState = s.state;
        }
        const c = s.counts ?? {};
        const a = s.augmented;
        const done = (c.cached ?? 0) + (c.extracted ?? 0) + (c.failed ?? 0);
        const aDone = (a?.cached ?? 0) + (a?.extracted ?? 0) + (a?.failed ?? 0);
        if (!extractionShown && c.total && (s.state === 2 || s.state > 2)) {
          extraction ??= createProgress('extracting');
          // Augmented copies are counted apart, but the bar covers both: they are extracted together.
          const copies = a?.total ? `; augmented ${aDone}/${a.total} (${a.cached ?? 0} cached)` : '';
          extraction.update(done + aDone, (c.total ?? 0) + (a?.total ?? 0), `(${c.cached ?? 0} cached, ${c.failed ?? 0} failed${copies})`);
          if (s.state > 2) {
            extraction.done();
            extractionShown = true;
          }
        }
        if (s.training?.epoch) {
          training ??= createProgress('training');
          training.update(s.training.epoch, s.training.epochs ?? 0, `loss ${(s.training.loss ?? 0).toFixed(3)} val ${pct(s.training.valAccuracy)}`);
        }
        if (s.sweep?.heads) {
          training ??= createProgress('sweep');
          training.update(s.sweep.headsDone ?? 0, s.sweep.heads, `heads, best val ${pct(s.sweep.bestValAccuracy)}`);
        }
      }
      if (isTerminal(s.state)) {
        if (!extractionShown) extraction?.done();
        training?.done();
        return s;
      }
    }
    throw new Error(`lost the watch on job ${jobId}`);
  }
}

/** How long a follow waits without any change before it says what it waits for, ms. */
const QUIET_MS = 30_000;

/** What a job that has not moved for QUIET_MS waits for, and where to look. */
function waitingFor(s: JobStatus | undefined): string {
  if (!s || s.state === JobState.JOB_STATE_QUEUED)
    return 'still queued after 30 s: no coordinator has taken it (is one running on this cluster? graft status shows the jobs; a data folder two clusters shared: docs/cluster.md, "Recovering a data folder")';
  if (s.state === JobState.JOB_STATE_EXTRACTING)
    return 'no image answered for 30 s: are workers running and connected? (graft status JOB shows the counts; the queue is on the dashboard)';
  return `${jobStateName(s.state)}: nothing new for 30 s (a long epoch, a long audit fold, or the coordinator waiting out a broker outage: its log says which)`;
}
