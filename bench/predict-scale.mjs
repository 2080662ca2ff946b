// `graft predict` at scale (`--sections predict`): 100,000 generated photos (the scale section's,
// with its zero-cost backbone) classified on a real cluster (nats-server, a coordinator, two
// workers) by a model trained on 1,000 others. What is measured is graft itself: photos per second
// from the command's start to its last row, the coordinator's memory per photo (its heap and resident
// memory over the idle process, sampled while the job runs) and the command's own peak memory
// (the answers stream: neither process holds them all).
import { spawn } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { CLI, now, procMemory, sleep } from './lib.mjs';
import { zeroCostModel } from './pipeline.mjs';
import { photos, snapshot, zeroCostCluster } from './scale.mjs';

/** Runs graft to its end, sampling `sample` every 250 ms meanwhile. @returns its exit code, stdout, and the samples. */
async function runSampled(args, sample) {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, GRAFT_LOG_LEVEL: 'warn' } });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err = (err + d).slice(-4000)));
  const exited = new Promise((r) => child.once('exit', r));
  const samples = [];
  let running = true;
  void exited.then(() => (running = false));
  while (running) {
    samples.push(await sample(child.pid));
    await sleep(250);
  }
  return { code: await exited, out, err, samples };
}

export async function benchPredictScale(work, { quick }) {
  const n = quick ? 10_000 : 100_000;
  console.error(`\n== graft predict at scale: ${n.toLocaleString('en')} photos, a zero-cost backbone, two workers`);
  const dir = join(work, 'predict-photos');
  const labelled = join(work, 'predict-labelled');
  await photos(dir, n);
  await photos(labelled, 1000, n); // other photos than the predicted ones: every one of those is extracted
  const backbone = await zeroCostModel(join(work, 'predict-model-backbone'), { size: 32 });
  const { nats, leader, stop } = await zeroCostCluster(work, 'predict');
  try {
    const model = join(work, 'predict-model');
    const trained = await runSampled(
      ['train', labelled, '--nats', nats.url, '--backbone', backbone, '--out', model, '--no-bundle', '--epochs', '5'],
      async () => 0,
    );
    if (trained.code !== 0) throw new Error(`training the model failed: ${trained.err}`);
    const idle = await snapshot(leader);
    const out = join(work, 'predictions.csv');
    const t0 = now();
    const r = await runSampled(['predict', model, dir, '--nats', nats.url, '--out', out, '--json'], async (pid) => ({
      coordinator: await snapshot(leader),
      cli: await procMemory(pid),
    }));
    const seconds = now() - t0;
    if (r.code !== 0) throw new Error(`graft predict failed: ${r.err}`);
    const summary = JSON.parse(r.out.trim().split('\n').at(-1));
    const rows = (await readFile(out, 'utf8')).trimEnd().split('\n').length - 1;
    const peak = (k) => Math.max(...r.samples.map((s) => s.coordinator[k]).filter(Number.isFinite));
    const result = {
      photos: n,
      rows,
      answered: summary.answered,
      seconds,
      photosPerSecond: n / seconds,
      extracted: summary.job.counts.extracted ?? 0,
      coordinatorHeapBytesPerPhoto: (peak('heap') - idle.heap) / n,
      coordinatorRssBytesPerPhoto: (peak('rss') - idle.rss) / n,
      cliPeakRss: Math.max(...r.samples.map((s) => s.cli.peak).filter(Number.isFinite)),
    };
    console.error(
      `predict: ${n} photos in ${seconds.toFixed(0)} s (${result.photosPerSecond.toFixed(0)}/s), ${rows} rows; coordinator +${result.coordinatorHeapBytesPerPhoto.toFixed(0)} B heap per photo; the command's peak RSS ${(result.cliPeakRss / 2 ** 20).toFixed(0)} MiB`,
    );
    return result;
  } finally {
    await stop();
    await rm(dir, { recursive: true, force: true });
  }
}
