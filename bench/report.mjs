// Renders BENCHMARKS.md from a bench/run.mjs result (bench/results/latest.json).
// Regenerate without rerunning: node bench/report.mjs
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const f = (x, d = 2) => (x === undefined || Number.isNaN(x) ? 'n/a' : Number(x).toFixed(d));
const pct = (x) => `${f(100 * x, 1)} %`;
const mark = (ok) => (ok ? 'met' : '**missed**');

export function renderMarkdown(out) {
  const m = out.machine;
  const lines = [
    '# Benchmarks',
    '',
    `Measured by \`npm run bench\` on ${m.date.slice(0, 10)}: ${m.cores} cores (${m.cpu}), Node ${m.node}, TensorFlow.js backend **${m.backend}**.`,
    `Data: ${out.data}. All figures of a row come from the same run on the same machine; ratios are between them.`,
    '',
    'Rerun: `npm ci && npm run bench` (needs `nats-server` on PATH, as the tests do; `--quick` for a short run).',
    'Raw figures: [`bench/results/latest.json`](bench/results/latest.json).',
    '',
  ];
  for (const r of out.results) {
    const w1 = r.workers1;
    const w2 = r.workers2;
    const split = w1?.split ?? {};
    const total = Object.values(split).reduce((a, b) => a + b, 0) || 1;
    lines.push(
      `## ${r.label}`,
      '',
      `${r.images} images, input ${r.backbone.inputSize}x${r.backbone.inputSize}, ${r.backbone.dim}-d vectors, batches of 8.`,
      '',
      '| # | measurement | result | ratio |',
      '|---|---|---|---|',
      `| 1 | bare loop: the backbone alone on pre-decoded tensors (the ceiling) | ${f(r.bareLoop)} images/s | 1.00 |`,
      `| 2 | the seed's way: one process, one image at a time, decode then infer | ${f(r.seedWay)} images/s | ${f(r.seedWay / r.bareLoop)} of (1) |`,
      `| 3 | one graft worker through NATS, manifest published to vectors stored | ${f(w1?.imagesPerSecond)} images/s | ${f(w1?.imagesPerSecond / r.bareLoop)} of (1) |`,
      `| 4 | two graft workers | ${f(w2?.imagesPerSecond)} images/s | ${f(w2?.imagesPerSecond / w1?.imagesPerSecond)}x (3) |`,
      `| 5 | the same job again, fully cached | ${f(r.cached?.seconds)} s, ${r.cached?.backboneCalls} backbone calls | ${pct(r.cached?.ratioToFirst)} of the first run |`,
      `| 7 | one worker's time split: fetch / decode / infer / publish | ${['fetch', 'decode', 'infer', 'publish'].map((k) => pct((split[k] ?? 0) / total)).join(' / ')} | |`,
      '',
    );
    if (r.tensors) lines.push(`Memory: ${r.tensors.after100} tensors after 100 images, ${r.tensors.after1000} after 1,000 (process RSS ${r.tensors.rssMiB} MiB).`, '');
    lines.push(
      'Targets (2-core machine, wasm backend):',
      '',
      `- one worker >= 0.90 of the bare loop: ${f(w1?.imagesPerSecond / r.bareLoop)}, ${mark(w1?.imagesPerSecond / r.bareLoop >= 0.9)}`,
      `- two workers >= 1.7x one worker: ${f(w2?.imagesPerSecond / w1?.imagesPerSecond)}x, ${mark(w2?.imagesPerSecond / w1?.imagesPerSecond >= 1.7)}`,
      `- fully cached rerun: ${r.cached?.backboneCalls} backbone calls and ${pct(r.cached?.ratioToFirst)} of the first run's time: ${mark(r.cached?.backboneCalls === 0 && r.cached?.ratioToFirst <= 0.1)}`,
      r.tensors ? `- memory flat over 1,000 images: ${mark(r.tensors.after100 === r.tensors.after1000)}` : '- memory flat: checked on the faster backbone (and by the unit tests)',
      '',
    );
  }
  if (out.head) {
    const h = out.head;
    lines.push(
      '## Head training and float16 vectors',
      '',
      `${h.vectors.train} training vectors of dimension ${h.dim}, ${h.classes} classes, batch = classes clamped to 32..256, RMSProp.`,
      '',
      '| # | measurement | float32 | float16 |',
      '|---|---|---|---|',
      `| 6 | head training, seconds per epoch | ${f(h.float32.secondsPerEpoch, 3)} | ${f(h.float16.secondsPerEpoch, 3)} |`,
      `| | test top-1 after 30 epochs (${h.vectors.test} test images) | ${pct(h.float32.top1)} | ${pct(h.float16.top1)} |`,
      '',
      `float16 on the wire and in the cache costs ${f(h.float16CostPoints)} points of test accuracy (target: under 0.5): ${mark(h.float16CostPoints < 0.5)}.`,
      '',
    );
  }
  lines.push(
    '## Where the time goes',
    '',
    'The wasm backend runs one inference at a time on the main thread, so a worker process uses one core for the',
    "backbone; decoding (sharp) runs on libuv's thread pool and the next task is fetched and decoded while the current",
    'one is in the backbone. On this 2-core machine the coordinator, nats-server, decoding threads and the workers share',
    'the same two cores: two workers cannot quite double one, and one worker loses a little to decoding that, on a',
    'machine with spare cores, would run beside it for free. On a GPU node the backbone leaves the CPU, and the',
    'pipelining matters more.',
    '',
  );
  return lines.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const root = join(dirname(fileURLToPath(import.meta.url)), '..');
  const out = JSON.parse(await readFile(join(root, 'bench/results/latest.json'), 'utf8'));
  await writeFile(join(root, 'BENCHMARKS.md'), renderMarkdown(out));
}
