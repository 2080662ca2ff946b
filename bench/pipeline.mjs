// The worker's own ceiling: a backbone that costs nothing, so images/s is the pipeline (pull,
// fetch, hash check, decode, resize, batch, publish) and what the coordinator and nats-server
// spend around it. Small photos and 12 MP phone-sized JPEGs, before and after each change,
// all in this one run. Part of `npm run bench` (`--sections pipeline` runs only this).
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import * as tf from '@tensorflow/tfjs';
import { decodeImage } from '@graft/vision';
import { cluster, connectionBytes, cpuSeconds, imagesOf, now, runJob, scrape, subset } from './lib.mjs';

/** Published GPU rates the sizing table is for (images/s; see BENCHMARKS.md for the sources). */
export const GPU_RATES = { 'InceptionV3 (299 px)': 3600, 'MobileNetV2 (224 px)': 10000 };

/** A model that costs nothing: global average pool, then a 3 -> 1280 dense layer (vectors as large as MobileNetV2's). */
async function zeroCostModel(dir) {
  await mkdir(dir, { recursive: true });
  const input = tf.input({ shape: [224, 224, 3] });
  const pooled = tf.layers.globalAveragePooling2d({ name: 'pool' }).apply(input);
  const out = tf.layers.dense({ units: 1280, name: 'feat', kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }) }).apply(pooled);
  const model = tf.model({ inputs: input, outputs: out });
  await model.save(
    tf.io.withSaveHandler(async (a) => {
      await writeFile(join(dir, 'model.json'), JSON.stringify({ format: 'layers-model', modelTopology: a.modelTopology, weightsManifest: [{ paths: ['w.bin'], weights: a.weightSpecs }] }));
      await writeFile(join(dir, 'w.bin'), Buffer.from(a.weightData));
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  model.dispose();
  return join(dir, 'model.json');
}

/** 12 MP phone-sized JPEGs (4000 x 3000, a few MB): real photos upscaled, with sensor-like noise so they compress like photos. */
async function phonePhotos(sources, n, dir) {
  const classes = ['a', 'b', 'c', 'd'];
  for (const c of classes) await mkdir(join(dir, c), { recursive: true });
  let seed = 7;
  for (let i = 0; i < n; i++) {
    const { data } = await sharp(await readFile(sources[i % sources.length])).resize(4000, 3000, { fit: 'fill' }).raw().toBuffer({ resolveWithObject: true });
    for (let j = 0; j < data.length; j++) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      const v = data[j] + ((seed >>> 24) % 24) - 12;
      data[j] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
    await writeFile(join(dir, classes[i % 4], `phone-${i}.jpg`), await sharp(data, { raw: { width: 4000, height: 3000, channels: 3 } }).jpeg({ quality: 92 }).toBuffer());
  }
  return dir;
}

/** Decodes with at most `inFlight` images at a time (each on one libuv thread): images/s. */
async function decodeRate(buffers, inFlight, decode) {
  let next = 0;
  const t0 = now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < buffers.length) await decode(buffers[next++]);
    }),
  );
  return buffers.length / (now() - t0);
}

/** Decoding alone, in this process: per thread and on every core, with and without JPEG shrink-on-load. */
async function decodeRows(small, large) {
  const cores = availableParallelism();
  const smallBufs = await Promise.all(small.slice(0, 120).map((f) => readFile(f)));
  const largeBufs = await Promise.all(large.slice(0, 16).map((f) => readFile(f)));
  const graftDecode = (b) => decodeImage(b, 224);
  // Without shrink-on-load: the whole 12 MP image is decoded, then resized.
  const fullDecode = async (b) => sharp(await sharp(b).raw().toBuffer(), { raw: { width: 4000, height: 3000, channels: 3 } }).resize(224, 224, { fit: 'fill', kernel: 'linear' }).raw().toBuffer();
  await decodeRate(smallBufs.slice(0, 8), 2, graftDecode); // warm-up
  const rows = {
    cores,
    decodeThreads: Number(process.env.UV_THREADPOOL_SIZE ?? 4),
    small: { oneThread: await decodeRate(smallBufs, 1, graftDecode), allCores: await decodeRate(smallBufs, cores, graftDecode) },
    large: { oneThread: await decodeRate(largeBufs, 1, graftDecode), allCores: await decodeRate(largeBufs, cores, graftDecode) },
    largeFullDecode: { oneThread: await decodeRate(largeBufs.slice(0, 6), 1, fullDecode) },
  };
  console.error(`decode: small ${rows.small.oneThread.toFixed(0)}/s on one thread, ${rows.small.allCores.toFixed(0)}/s on ${cores}; 12 MP ${rows.large.oneThread.toFixed(1)}/s, ${rows.large.allCores.toFixed(1)}/s; 12 MP decoded whole ${rows.largeFullDecode.oneThread.toFixed(1)}/s`);
  return rows;
}

/** One worker with the zero-cost backbone over a folder: rate, CPU per image by process, stages, bytes. */
async function ceilingRun(work, dir, model, label, extra = {}) {
  const files = await imagesOf(dir);
  const c = await cluster(work, 1, model);
  try {
    await c.warm();
    const cpu0 = await Promise.all(c.pids.map(cpuSeconds));
    const m0 = await scrape(c.ports[0]);
    const b0 = await connectionBytes(c.nats.monitorPort);
    const t0 = now();
    const run = await runJob(c, dir, model, undefined, undefined, extra);
    const wall = now() - t0;
    const cpu1 = await Promise.all(c.pids.map(cpuSeconds));
    const m1 = await scrape(c.ports[0]);
    const b1 = await connectionBytes(c.nats.monitorPort);
    const n = files.length;
    const cpu = cpu1.map((x, i) => (x - cpu0[i]) / n);
    const workerConn = (b) => b.filter((x) => x.name.startsWith('graft-worker-')).reduce((a, x) => ({ sent: a.sent + x.sent, received: a.received + x.received }), { sent: 0, received: 0 });
    const w0 = workerConn(b0);
    const w1 = workerConn(b1);
    const stages = Object.fromEntries(['fetch', 'decode', 'infer', 'publish'].map((k) => [k, (m1[k] - m0[k]) / n]));
    const r = {
      label,
      images: n,
      publishSeconds: run.publishSeconds,
      imagesPerSecond: n / run.seconds,
      wallSeconds: wall,
      cpuPerImage: { coordinator: cpu[0], worker: cpu[1], natsServer: cpu[2], total: cpu.reduce((a, b) => a + b, 0) },
      stageSecondsPerImage: stages,
      bytesPerImage: { fetched: (m1.bytesFetched - m0.bytesFetched) / n, workerReceived: (w1.received - w0.received) / n, workerSent: (w1.sent - w0.sent) / n },
      counts: { ...run.status.counts },
    };
    r.imagesPerCoreSecond = 1 / r.cpuPerImage.total;
    console.error(`${label}: ${r.imagesPerSecond.toFixed(1)} img/s, ${(1000 * r.cpuPerImage.total).toFixed(1)} ms CPU per image (worker ${(1000 * r.cpuPerImage.worker).toFixed(1)}), ${(r.bytesPerImage.workerReceived / 1e3).toFixed(0)} KB in per image`);
    return r;
  } finally {
    await c.stop();
  }
}

/** The pipeline section of the benchmark. */
export async function benchPipeline(work, data, { quick }) {
  console.error('\n== the worker pipeline with a zero-cost backbone');
  const model = await zeroCostModel(join(work, 'zero-model'));
  const smallDir = data.splits ? await subset(data.dir, quick ? 10 : 40, work, 'pipeline-small') : data.dir;
  const small = await imagesOf(smallDir);
  const t0 = now();
  const largeDir = await phonePhotos(small, quick ? 12 : 40, join(work, 'phone'));
  const large = await imagesOf(largeDir);
  const sizes = await Promise.all(large.map(async (f) => (await readFile(f)).byteLength));
  console.error(`generated ${large.length} 12 MP photos (${(sizes.reduce((a, b) => a + b, 0) / sizes.length / 1e6).toFixed(1)} MB each on average) in ${(now() - t0).toFixed(0)} s`);

  const decode = await decodeRows(small, large);
  const runs = {
    small: await ceilingRun(work, smallDir, model, `small photos (${data.splits ? 'clothing-small' : 'generated'})`),
    large: await ceilingRun(work, largeDir, model, '12 MP photos as published'),
    largeShrunk: await ceilingRun(work, largeDir, model, '12 MP photos, graft publish --max-side 512', { maxSide: 512, shrinkCacheDir: join(work, 'shrunk') }),
  };
  const sizing = {};
  for (const [kind, r] of Object.entries(runs)) {
    sizing[kind] = Object.fromEntries(Object.entries(GPU_RATES).map(([name, rate]) => [name, { cores: rate * r.cpuPerImage.total, workerCores: rate * r.cpuPerImage.worker }]));
  }
  return { photoMB: sizes.reduce((a, b) => a + b, 0) / sizes.length / 1e6, decode, runs, sizing };
}
