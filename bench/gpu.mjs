// GPU nodes (`--sections gpu`): what a GPU machine runs as it is. Each embedded backbone's bare loop
// on ONNX Runtime's CUDA provider at GPU batch sizes, one graft worker on GPU 0 through NATS,
// and the CPU cores it takes to keep the GPU fed at its measured rate, from the pipeline section's
// CPU per photo. Without a GPU and the CUDA provider it records why it did not run.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_ID, chooseBackend } from '@graft/vision';
import { bareLoop, EMBEDDED } from './backbones.mjs';
import { cluster, cpuSeconds, imagesOf, runJob, subset } from './lib.mjs';

const BATCHES = [32, 64, 128];

export async function benchGpu(work, data, { quick }) {
  console.error('\n== GPU: ONNX Runtime on CUDA');
  const choice = await chooseBackend({ preferred: 'onnxruntime' }).catch((err) => ({ skipped: [{ name: 'onnxruntime', reason: err.message }] }));
  if (choice.onnx?.provider !== 'cuda') {
    const reason = choice.skipped?.find((s) => s.name.startsWith('onnxruntime'))?.reason ?? 'no CUDA provider';
    console.error(`skipped: ${reason}`);
    return { skipped: reason };
  }
  const cacheDir = join(work, 'model-cache');
  const sample = data.splits ? await subset(data.dir, quick ? 4 : 13, work, 'gpu-bare') : data.dir;
  const bare = [];
  for (const id of EMBEDDED) {
    const rows = {};
    for (const b of BATCHES) rows[b] = await bareLoop(id, 'onnxruntime', 1, sample, 128, cacheDir, b);
    console.error(`${id}: ${BATCHES.map((b) => `batch ${b} ${rows[b].imagesPerSecond.toFixed(0)}/s`).join(', ')}`);
    bare.push({ id, rows, best: Math.max(...Object.values(rows).map((r) => r.imagesPerSecond)) });
  }
  // One worker on the GPU through NATS, tasks of 128 photos: the rate graft reaches and the CPU it spends.
  const dir = data.splits ? await subset(data.dir, quick ? 30 : 100, work, 'gpu-job') : data.dir;
  const n = (await imagesOf(dir)).length;
  const c = await cluster(work, 1, DEFAULT_ID, ['--batch-size', '128'], ['--task-size', '128']);
  let job;
  try {
    await c.warm();
    const cpu0 = await Promise.all(c.pids.map(cpuSeconds));
    const run = await runJob(c, dir, DEFAULT_ID, undefined);
    const cpu1 = await Promise.all(c.pids.map(cpuSeconds));
    job = { images: n, imagesPerSecond: n / run.seconds, runtimes: run.status.runtimes, cpuPerImage: cpu1.reduce((a, x, i) => a + x - cpu0[i], 0) / n };
    console.error(`one GPU worker: ${job.imagesPerSecond.toFixed(0)} images/s, ${(1000 * job.cpuPerImage).toFixed(1)} ms CPU per image, on ${job.runtimes}`);
  } finally {
    await c.stop();
  }
  return { device: existsSync('/proc/driver/nvidia/version') ? 'NVIDIA' : 'unknown', bare, job };
}
