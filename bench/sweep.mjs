// Better heads for free: today's default head, a sweep over the cached vectors, and a sweep with
// augmented copies (computed by the workers and cached), on clothing-small with its splits and the
// shared MobileNetV2-0.35, all in one run. Part of `npm run bench` (`--sections sweep` runs only this).
import { cluster, runJob, scrape } from './lib.mjs';
import { artifactNames } from '@graft/protocol';

async function report(c, jobId) {
  const bytes = await c.bus.artifacts.getBlob(artifactNames.modelFile(jobId, 'report.json'));
  return JSON.parse(Buffer.from(bytes).toString('utf8'));
}

const calls = async (c) => (await Promise.all(c.ports.map(scrape))).reduce((a, m) => a + m.calls, 0);

/** One job through the cluster: extraction time, backbone calls, the report. */
async function job(c, data, spec, training, label) {
  const before = await calls(c);
  const t0 = performance.now();
  const run = await runJob(c, data.dir, spec, data.splits, undefined, { training });
  const total = (performance.now() - t0) / 1000;
  const r = await report(c, run.jobId);
  const out = {
    label,
    extractSeconds: run.seconds,
    totalSeconds: total,
    backboneCalls: (await calls(c)) - before,
    top1: r.top1,
    counts: { ...run.status.counts },
    augmented: run.status.augmented ? { ...run.status.augmented } : undefined,
    sweep: r.sweep
      ? {
          heads: r.sweep.heads.length,
          seconds: r.sweep.seconds,
          parallel: r.sweep.parallel,
          winner: r.sweep.heads.find((h) => h.id === r.sweep.winner),
          table: r.sweep.heads,
        }
      : undefined,
  };
  console.error(
    `${label}: test top-1 ${(100 * out.top1).toFixed(2)} %, extraction ${out.extractSeconds.toFixed(1)} s, ${out.backboneCalls} backbone calls${out.sweep ? `, sweep of ${out.sweep.heads} heads in ${out.sweep.seconds.toFixed(0)} s` : ''}`,
  );
  return out;
}

export async function benchSweep(work, data, spec) {
  console.error(`\n== sweeps and augmentation on ${data.name}`);
  const c = await cluster(work, 2, spec);
  try {
    await c.warm();
    const plain = await job(c, data, spec, {}, "today's default head");
    const sweep = await job(c, data, spec, { sweep: true }, 'sweep winner (default grid)');
    const augmented = await job(c, data, spec, { sweep: true, augment: 'crop-flip', augmentCopies: 4 }, 'sweep winner, --augment flip,crop --augment-copies 4');
    const again = await job(c, data, spec, { augment: 'crop-flip', augmentCopies: 4 }, 'the augmented vectors again (default head)');
    return { plain, sweep, augmented, again };
  } finally {
    await c.stop();
  }
}
