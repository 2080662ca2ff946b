// Backbones on ONNX Runtime against TF.js's wasm backend, the same weights, all in this one run:
// each embedded backbone's bare loop (a process of its own per runtime and thread count), then graft
// through NATS with the default backbone: the first job on clothing-small from originals on each
// runtime, one and two workers against the bare loop, the layout of a CPU node (workers x threads),
// where a photo's CPU goes, and a cached rerun. Part of `npm run bench` (`--sections backbones`).
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { availableParallelism } from 'node:os';
import { localLayout } from '@graft/cli';
import { CATALOGUE, DEFAULT_ID } from '@graft/vision';
import { ROOT, cluster, cpuSeconds, imagesOf, now, runJob, scrape, subset } from './lib.mjs';

/** The embedded backbones, measured on each runtime. */
export const EMBEDDED = [DEFAULT_ID, 'mobilenet_v2_035', 'inception_v3_mixed5'];

/** A bare loop in its own process: { imagesPerSecond, msPerImage, runtime, threads }. */
export function bareLoop(backbone, backend, threads, images, count, cacheDir, batch = 8) {
  const args = [
    join(ROOT, 'bench/bare-loop.mjs'),
    '--backbone',
    backbone,
    '--backend',
    backend,
    '--images',
    images,
    '--count',
    String(count),
    '--cache-dir',
    cacheDir,
    '--batch',
    String(batch),
    ...(threads ? ['--threads', String(threads)] : []),
  ];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, GRAFT_LOG_LEVEL: 'warn' } });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err = (err + d).slice(-2000)));
    child.once('exit', (code) =>
      code === 0 ? resolve(JSON.parse(out.trim().split('\n').at(-1))) : reject(new Error(`bare loop ${backbone} on ${backend}: exit ${code}: ${err}`)),
    );
  });
}

/** Every embedded backbone on ONNX Runtime (1 and 2 threads) and on TF.js wasm (single-threaded in Node). */
async function bareLoops(dir, cacheDir, quick) {
  const rows = [];
  for (const id of EMBEDDED) {
    const count = id.startsWith('inception') ? (quick ? 8 : 24) : quick ? 16 : 64;
    const row = {
      id,
      description: CATALOGUE[id].description,
      onnx1: await bareLoop(id, 'onnxruntime', 1, dir, count, cacheDir),
      onnx2: await bareLoop(id, 'onnxruntime', 2, dir, count, cacheDir),
      wasm: await bareLoop(id, 'wasm', undefined, dir, count, cacheDir),
    };
    row.speedup = row.onnx1.imagesPerSecond / row.wasm.imagesPerSecond;
    console.error(
      `${id}: ONNX Runtime ${row.onnx1.msPerImage.toFixed(1)} ms (1 thread), ${row.onnx2.msPerImage.toFixed(1)} ms (2 threads); wasm ${row.wasm.msPerImage.toFixed(1)} ms: ${row.speedup.toFixed(1)}x`,
    );
    rows.push(row);
  }
  return rows;
}

/** A timed job on a cluster: images/s, CPU per image of each process, the workers' stage split. */
async function measured(c, dir, label, splits) {
  const n = (await imagesOf(dir)).length;
  const cpu0 = await Promise.all(c.pids.map(cpuSeconds));
  const m0 = await Promise.all(c.ports.map(scrape));
  const run = await runJob(c, dir, DEFAULT_ID, splits);
  const cpu1 = await Promise.all(c.pids.map(cpuSeconds));
  const m1 = await Promise.all(c.ports.map(scrape));
  const perImage = cpu1.map((x, i) => (x - cpu0[i]) / n);
  const workers = perImage.slice(1, -1).reduce((a, b) => a + b, 0);
  const stage = (k) => m1.reduce((a, m, i) => a + m[k] - m0[i][k], 0) / n;
  const r = {
    label,
    images: n,
    seconds: run.seconds,
    imagesPerSecond: n / run.seconds,
    runtimes: run.status.runtimes ?? [],
    calls: m1.reduce((a, m, i) => a + m.calls - m0[i].calls, 0),
    cpuPerImage: { coordinator: perImage[0], workers, natsServer: perImage.at(-1), total: perImage.reduce((a, b) => a + b, 0) },
    stageSecondsPerImage: Object.fromEntries(['fetch', 'decode', 'infer', 'publish'].map((k) => [k, stage(k)])),
    counts: { ...run.status.counts },
  };
  console.error(
    `${label}: ${r.imagesPerSecond.toFixed(1)} images/s (${r.seconds.toFixed(1)} s), ${(1000 * r.cpuPerImage.total).toFixed(1)} ms CPU per image (workers ${(1000 * workers).toFixed(1)}), on ${r.runtimes.join(', ')}`,
  );
  return r;
}

/** A fresh cluster (its own store: a first job, from originals), warmed, one timed job, stopped. */
async function freshJob(work, workers, workerArgs, dir, label, splits, again = false) {
  const c = await cluster(work, workers, DEFAULT_ID, workerArgs);
  try {
    await c.warm();
    const first = await measured(c, dir, label, splits);
    if (again) first.cached = await measured(c, dir, `${label}, the same job again`, splits);
    return first;
  } finally {
    await c.stop();
  }
}

export async function benchBackbones(work, data, { quick }) {
  console.error('\n== backbones: ONNX Runtime against TF.js wasm, then graft through NATS');
  const cacheDir = join(work, 'model-cache');
  process.env.GRAFT_CACHE_DIR = cacheDir; // the cluster's workers convert once into it
  const sample = data.splits ? await subset(data.dir, quick ? 4 : 8, work, 'bare') : data.dir;
  const bare = await bareLoops(sample, cacheDir, quick);
  const def = bare[0];
  const small = data.splits ? await subset(data.dir, quick ? 20 : 60, work, 'workers') : data.dir;
  const one = await freshJob(work, 1, [], small, 'one worker (ONNX Runtime, 1 thread)');
  const two = await freshJob(work, 2, [], small, 'two workers (ONNX Runtime, 1 thread each)');
  const oneTwoThreads = await freshJob(work, 1, ['--threads', '2'], small, 'one worker with 2 threads');
  // The first job on the whole set in each runtime's default layout (graft up and graft train's).
  const full = data.dir;
  const name = data.splits ? 'clothing-small' : 'the photos';
  const cores = availableParallelism();
  const onnx = localLayout(cores);
  const tfjs = localLayout(cores, { backend: 'wasm' });
  const first = await freshJob(
    work,
    onnx.workers,
    ['--threads', String(onnx.threads)],
    full,
    `first job on ${name}, ONNX Runtime (the default: ${onnx.workers} worker(s) of ${onnx.threads} thread(s))`,
    data.splits,
    true,
  );
  const wasm = await freshJob(
    work,
    tfjs.workers,
    ['--backend', 'wasm'],
    full,
    `first job on ${name}, --backend wasm (${tfjs.workers} workers, one per core)`,
    data.splits,
  );
  return {
    bare,
    workers: {
      one,
      two,
      oneTwoThreads,
      oneOfBare: one.imagesPerSecond / def.onnx1.imagesPerSecond,
      twoOverOne: two.imagesPerSecond / one.imagesPerSecond,
      layout: two.imagesPerSecond >= oneTwoThreads.imagesPerSecond ? 'one worker per core, one thread each' : 'one worker per two cores, two threads each',
    },
    firstJob: { onnx: first, wasm, speedup: first.imagesPerSecond / wasm.imagesPerSecond },
  };
}
