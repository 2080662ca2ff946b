#!/usr/bin/env node
// One bare loop in a process of its own (the runtime and its threads are per process): a backbone
// alone on pre-decoded pixels, batches of 8 (--batch). Prints one JSON line: images/s and how it ran.
//   node bench/bare-loop.mjs --backbone ID --backend onnxruntime|wasm [--threads N] [--batch N] --images DIR [--count N]
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { decodeImage, initBackend, loadBackbone, parseBackbone } from '@graft/vision';
import { imagesOf, now } from './lib.mjs';

const { values: a } = parseArgs({
  options: {
    backbone: { type: 'string' },
    backend: { type: 'string' },
    threads: { type: 'string' },
    images: { type: 'string' },
    count: { type: 'string' },
    'cache-dir': { type: 'string' },
    seconds: { type: 'string' },
    batch: { type: 'string' },
  },
});
const choice = await initBackend({ preferred: a.backend, threads: a.threads ? Number(a.threads) : undefined });
const backbone = await loadBackbone(parseBackbone(a.backbone), { cacheDir: a['cache-dir'] });
const size = backbone.info.inputSize;
const files = (await imagesOf(a.images)).slice(0, Number(a.count ?? 64));
const pixels = [];
for (const f of files) pixels.push(await decodeImage(new Uint8Array(await readFile(f)), size));
const batch = Number(a.batch ?? 8);
// Fewer photos than a batch (a GPU's batch of 128): the photos again, to fill it.
while (pixels.length < batch) pixels.push(...pixels.slice(0, batch - pixels.length));
const batches = [];
for (let i = 0; i < pixels.length; i += batch) batches.push(pixels.slice(i, i + batch));
await backbone.embed(batches[0].map((p) => p.slice()));
// Runs the whole set at least once, and for at least `seconds`, so fast runtimes are timed over enough images.
const minSeconds = Number(a.seconds ?? 4);
let n = 0;
const c0 = process.cpuUsage();
const t0 = now();
while (n < pixels.length || now() - t0 < minSeconds) {
  for (const b of batches) {
    await backbone.embed(b.map((p) => p.slice()));
    n += b.length;
  }
}
const seconds = now() - t0;
const cpu = process.cpuUsage(c0);
// CPU of every thread of the process (ONNX Runtime's and the wasm backend's included) per image.
const cpuMsPerImage = (cpu.user + cpu.system) / 1000 / n;
process.stdout.write(
  `${JSON.stringify({ backbone: backbone.info.id, runtime: backbone.runtime, tfjs: choice.tfjs, threads: choice.onnx?.threads ?? 1, batch, images: n, imagesPerSecond: n / seconds, msPerImage: (1000 * seconds) / n, cpuMsPerImage })}\n`,
);
backbone.dispose();
process.exit(0);
