// BENCHMARKS.md's backbone sections: ONNX Runtime against TF.js wasm (bench/backbones.mjs), the
// default backbone against the old one, and GPU nodes (bench/gpu.mjs).
import { f, mark, pct } from './format.mjs';

const ms = (x) => f(1000 * x, 1);

export function backbonesSection(b, out) {
  const def = b.bare[0];
  const w = b.workers;
  const j = b.firstJob;
  const cpu = (r) => `${ms(r.cpuPerImage.workers)} / ${ms(r.cpuPerImage.coordinator)} / ${ms(r.cpuPerImage.natsServer)} = ${ms(r.cpuPerImage.total)}`;
  const stages = (r) => ['fetch', 'decode', 'infer', 'publish'].map((k) => ms(r.stageSecondsPerImage[k])).join(' / ');
  // graft's own CPU per photo: everything the processes spent, less the backbone's (its bare loop).
  const own = (r) => r.cpuPerImage.total - 1 / def.onnx1.imagesPerSecond;
  return [
    '## Backbones: ONNX Runtime against TF.js wasm, the same weights',
    '',
    `Each embedded backbone alone on pre-decoded photos of ${out.data.split(' (')[0]} (its 224 or 299 px input), batches of 8, each runtime in a process of its own: ONNX Runtime's CPU provider (the backbone converted from TF.js by graft and checked against it; spinning threads off) with one and two intra-op threads, and TF.js's wasm backend, which is single-threaded in Node whatever \`setThreadsCount\` says (so it has no 2-thread row). ms per image (images/s):`,
    '',
    '| backbone | ONNX Runtime, 1 thread | ONNX Runtime, 2 threads | TF.js wasm | ONNX Runtime (1 thread) vs wasm |',
    '|---|---|---|---|---|',
    ...b.bare.map(
      (r) =>
        `| ${r.id} | ${f(r.onnx1.msPerImage, 1)} (${f(r.onnx1.imagesPerSecond, 0)}) | ${f(r.onnx2.msPerImage, 1)} (${f(r.onnx2.imagesPerSecond, 0)}) | ${f(r.wasm.msPerImage, 1)} (${f(r.wasm.imagesPerSecond, 1)}) | ${f(r.speedup, 1)}x |`,
    ),
    '',
    `### graft through NATS with the default backbone (${def.id})`,
    '',
    "Each row a fresh cluster (its own JetStream store, so the job is a first one: photos fetched and decoded from the originals, prepared inputs made), warmed on a tiny job first so the model is loaded; images/s from the manifest published to every vector stored. CPU per photo is every CPU-second of each process over the photos (workers / coordinator / nats-server = all); stage times are the workers' wall times per photo.",
    '',
    '| run | photos | images/s | CPU ms per photo: workers / coordinator / nats-server = all | stage ms per photo: fetch / decode / infer / publish | backbone ran on |',
    '|---|---|---|---|---|---|',
    ...[w.one, w.two, w.oneTwoThreads, j.onnx, j.onnx.cached, j.wasm]
      .filter(Boolean)
      .map((r) => `| ${r.label} | ${r.images} | ${f(r.imagesPerSecond, 1)} | ${cpu(r)} | ${stages(r)} | ${r.runtimes.join(', ') || '(no backbone call)'} |`),
    '',
    `Where a photo's CPU goes on ONNX Runtime (the first job above): inference ${ms(1 / def.onnx1.imagesPerSecond)} ms (the bare loop) of ${ms(j.onnx.cpuPerImage.total)} ms in all, so graft's own cost per photo (fetch, hash check, decode, prepared inputs, publish, the coordinator and nats-server) is ${ms(own(j.onnx))} ms: ${pct(own(j.onnx) / j.onnx.cpuPerImage.total)} of the CPU, where on wasm inference was ${pct(1 / def.wasm.imagesPerSecond / j.wasm.cpuPerImage.total)} of it.`,
    '',
    `**The default layout of a CPU node** was chosen from rows 2 and 3: two workers of one ONNX Runtime thread ran ${f(w.two.imagesPerSecond, 1)} images/s, one worker of two threads ${f(w.oneTwoThreads.imagesPerSecond, 1)} (${f(w.oneTwoThreads.imagesPerSecond / w.two.imagesPerSecond)}x), with ${f(w.oneTwoThreads.cpuPerImage.total / w.two.cpuPerImage.total)}x the CPU per photo: a second worker process pays its own event loop, pulls, fetches and decoder threads for every photo, where a second intra-op thread only splits the convolutions (${f(def.onnx1.msPerImage, 1)} -> ${f(def.onnx2.msPerImage, 1)} ms in the bare loop). So \`graft up\` and \`graft train\` start one worker per two cores with two threads each (${w.layout} measured faster here); a TF.js \`--backend\` runs one thread, so it gets one worker per core. \`--workers\` and \`--threads\` override; a lone \`graft worker\` runs one thread unless \`--threads\` or \`GRAFT_THREADS\` says more (the CPU compose service sets 2). Spinning intra-op threads are off, and libvips decodes each photo on one thread, so decoding and inference share the cores without oversubscribing them. Measured on 2 cores only: past two threads per worker, scaling is not measured here.`,
    '',
    'Targets (this run, 2 cores):',
    '',
    `- the default backbone's first job on ${out.data.split(' (')[0]} from originals, ONNX Runtime >= 5x the images/s of \`--backend wasm\`: ${f(j.onnx.imagesPerSecond, 1)} against ${f(j.wasm.imagesPerSecond, 1)} images/s, ${f(j.speedup, 2)}x, ${mark(j.speedup >= 5)}`,
    `- one worker >= 0.9 of the ONNX Runtime bare loop: ${f(w.one.imagesPerSecond, 1)} against ${f(def.onnx1.imagesPerSecond, 1)} images/s, ${f(w.oneOfBare)}, ${mark(w.oneOfBare >= 0.9)}`,
    `- two workers >= 1.7x one: ${f(w.twoOverOne)}x, ${mark(w.twoOverOne >= 1.7)}`,
    `- the same job again, fully cached: ${j.onnx.cached ? `${j.onnx.cached.calls} backbone calls, ${f(j.onnx.cached.seconds, 2)} s (${pct(j.onnx.cached.seconds / j.onnx.seconds)} of the first)` : 'n/a'}, ${mark(j.onnx.cached?.calls === 0)}`,
    '',
  ];
}

/** The default backbone against the old one: the default head on the full dataset with its splits. */
export function defaultHeadRows(h) {
  const d = h.defaultHead;
  if (!d) return [];
  const [now, old] = Object.entries(d);
  return [
    `The default head (RMSProp, early stopping on validation accuracy) on every photo with its own splits, test top-1: **${now[0]} ${pct(now[1].top1)}** (the default), ${old[0]} ${pct(old[1].top1)} (the default before it): ${f(100 * (now[1].top1 - old[1].top1), 1)} points. Extraction with two workers on ONNX Runtime: ${f(now[1].extractSeconds, 0)} s and ${f(old[1].extractSeconds, 0)} s.`,
    '',
  ];
}

/** GPU nodes (bench/gpu.mjs): measured on a GPU machine, or why not. */
export function gpuSection(g, pipeline) {
  const lines = ['## GPU nodes (`--sections gpu`)', ''];
  if (!g || g.skipped) {
    lines.push(
      `Not measured in this run: ${g?.skipped ?? 'the section did not run'}. On a machine with an NVIDIA GPU (driver R525 or later, CUDA 12 and cuDNN 9: the GPU image has them) and onnxruntime-node's CUDA provider, \`npm run bench -- --sections gpu\` measures each embedded backbone's bare loop at batches of 32, 64 and 128 on the CUDA provider, one graft worker on the GPU through NATS (tasks of 128), and the cores that keep that GPU fed; the sizing table in the pipeline section then uses the measured rates.`,
      '',
    );
    return lines;
  }
  lines.push(
    '| backbone | batch 32 | batch 64 | batch 128 |',
    '|---|---|---|---|',
    ...g.bare.map(
      (r) =>
        `| ${r.id} | ${Object.values(r.rows)
          .map((x) => `${f(x.imagesPerSecond, 0)}/s`)
          .join(' | ')} |`,
    ),
    '',
  );
  if (g.job)
    lines.push(
      `One graft worker on the GPU, ${g.job.images} photos: ${f(g.job.imagesPerSecond, 0)} images/s, ${ms(g.job.cpuPerImage)} ms of CPU per photo in all (on ${g.job.runtimes?.join(', ')}).`,
      '',
    );
  const small = pipeline?.runs?.smallFirst;
  if (small)
    lines.push(
      ...g.bare.map(
        (r) =>
          `- ${r.id} at ${f(r.best, 0)} images/s: ${f(r.best * small.cpuPerImage.total, 0)} CPU cores (worker alone ${f(r.best * small.cpuPerImage.worker, 0)}) for small photos from originals.`,
      ),
      '',
    );
  return lines;
}
