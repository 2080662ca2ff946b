// The worker's own ceiling: a backbone that costs nothing, so images/s is the pipeline (pull,
// fetch, hash check, decode, resize, batch, publish) and what the coordinator and nats-server
// spend around it. Small photos and 12 MP phone-sized JPEGs, before and after each change,
// all in this one run. Part of `npm run bench` (`--sections pipeline` runs only this).
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import * as tf from '@tensorflow/tfjs';
import { Objm } from '@nats-io/obj';
import { STREAMS, openBus, putImage, readImage, startLocalNats } from '@graft/protocol';
import { decodeImage } from '@graft/vision';
import { cluster, connectionBytes, cpuSeconds, imagesOf, now, runJob, scrape, sleep, subset } from './lib.mjs';

/** Published GPU rates the sizing table is for (images/s; see BENCHMARKS.md for the sources). */
export const GPU_RATES = { 'InceptionV3 (299 px)': 3600, 'MobileNetV2 (224 px)': 10000 };

/**
 * A model that costs nothing: global average pool, then a 3 -> 1280 dense layer (vectors as large as
 * MobileNetV2's). Another seed is another backbone (another fingerprint) at the same input size.
 */
export async function zeroCostModel(dir, { seed = 1, size = 224 } = {}) {
  await mkdir(dir, { recursive: true });
  const input = tf.input({ shape: [size, size, 3] });
  const pooled = tf.layers.globalAveragePooling2d({ name: 'pool' }).apply(input);
  const out = tf.layers.dense({ units: 1280, name: 'feat', kernelInitializer: tf.initializers.glorotUniform({ seed }) }).apply(pooled);
  const model = tf.model({ inputs: input, outputs: out });
  await model.save(
    tf.io.withSaveHandler(async (a) => {
      await writeFile(
        join(dir, 'model.json'),
        JSON.stringify({ format: 'layers-model', modelTopology: a.modelTopology, weightsManifest: [{ paths: ['w.bin'], weights: a.weightSpecs }] }),
      );
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
    const { data } = await sharp(await readFile(sources[i % sources.length]))
      .resize(4000, 3000, { fit: 'fill' })
      .raw()
      .toBuffer({ resolveWithObject: true });
    for (let j = 0; j < data.length; j++) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      const v = data[j] + ((seed >>> 24) % 24) - 12;
      data[j] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
    await writeFile(
      join(dir, classes[i % 4], `phone-${i}.jpg`),
      await sharp(data, { raw: { width: 4000, height: 3000, channels: 3 } })
        .jpeg({ quality: 92 })
        .toBuffer(),
    );
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
  const fullDecode = async (b) =>
    sharp(await sharp(b).raw().toBuffer(), { raw: { width: 4000, height: 3000, channels: 3 } })
      .resize(224, 224, { fit: 'fill', kernel: 'linear' })
      .raw()
      .toBuffer();
  await decodeRate(smallBufs.slice(0, 8), 2, graftDecode); // warm-up
  const rows = {
    cores,
    decodeThreads: Number(process.env.UV_THREADPOOL_SIZE ?? 4),
    small: { oneThread: await decodeRate(smallBufs, 1, graftDecode), allCores: await decodeRate(smallBufs, cores, graftDecode) },
    large: { oneThread: await decodeRate(largeBufs, 1, graftDecode), allCores: await decodeRate(largeBufs, cores, graftDecode) },
    largeFullDecode: { oneThread: await decodeRate(largeBufs.slice(0, 6), 1, fullDecode) },
  };
  console.error(
    `decode: small ${rows.small.oneThread.toFixed(0)}/s on one thread, ${rows.small.allCores.toFixed(0)}/s on ${cores}; 12 MP ${rows.large.oneThread.toFixed(1)}/s, ${rows.large.allCores.toFixed(1)}/s; 12 MP decoded whole ${rows.largeFullDecode.oneThread.toFixed(1)}/s`,
  );
  return rows;
}

/** An object's bytes as graft read them before: the JetStream message get (JSON, base64), one request per chunk. */
async function readByMessageGet(bus, store, sha) {
  const info = await store.info(sha);
  const subject = `$O.${BEFORE_STORE}.C.${info.nuid}`;
  const parts = [];
  let seq = 1;
  for (let i = 0; i < info.chunks; i++) {
    const m = await bus.jsm.streams.getMessage(`OBJ_${BEFORE_STORE}`, info.chunks === 1 ? { last_by_subj: subject } : { seq, next_by_subj: subject });
    parts.push(m.data);
    seq = m.seq + 1;
  }
  return createHash('sha256').update(Buffer.concat(parts)).digest('hex') === sha;
}

/** A scratch object store standing for the image store graft had before its own layout (GRAFT_IMAGES). */
const BEFORE_STORE = 'bench-images-before';

/**
 * Reading photos three ways, in this process against one nats-server, 4 reads at
 * a time (as a task does): the object store's own get (an ordered consumer per object, graft's first
 * way), message gets (JSON with base64 bodies, the way before this one) and graft's direct gets now.
 * Wall and CPU (this process and nats-server) per photo, and consumers left on the server.
 */
async function fetchRows(work, small, large) {
  const dataDir = await mkdtemp(join(work, 'nats-fetch-'));
  const nats = await startLocalNats({ dataDir });
  const bus = await openBus({ servers: nats.url });
  try {
    // The ways before read photos uploaded to an object store in its 128 KiB chunks; graft now uploads 1,000 KiB chunks to its own stream.
    const before = await new Objm(bus.js).create(BEFORE_STORE);
    const asBefore = (sha, bytes) => before.putBlob({ name: sha }, bytes);
    const asNow = (sha, bytes) => putImage(bus, { name: sha, description: sha }, bytes);
    const ways = {
      objectGet: [
        asBefore,
        async (sha) =>
          createHash('sha256')
            .update(await before.getBlob(sha))
            .digest('hex') === sha,
        `OBJ_${BEFORE_STORE}`,
      ],
      messageGet: [asBefore, (sha) => readByMessageGet(bus, before, sha), `OBJ_${BEFORE_STORE}`],
      directGet: [asNow, async (sha) => (await readImage(bus, sha)).ok, STREAMS.images],
    };
    const rows = {};
    for (const [kind, files] of [
      ['small', small.slice(0, 120)],
      ['large', large.slice(0, 16)],
    ]) {
      const photos = await Promise.all(
        files.map(async (f) => {
          const bytes = await readFile(f);
          return { bytes, sha: createHash('sha256').update(bytes).digest('hex') };
        }),
      );
      const shas = photos.map((p) => p.sha);
      rows[kind] = {};
      for (const [way, [upload, read, stream]] of Object.entries(ways)) {
        for (const p of photos) await upload(p.sha, p.bytes);
        const consumers = async () => {
          let k = 0;
          for await (const _ of bus.jsm.consumers.list(stream)) k++;
          return k;
        };
        await read(shas[0]); // warm-up
        await sleep(1000);
        const consumers0 = await consumers();
        const c0 = process.cpuUsage();
        const n0 = await cpuSeconds(nats.process.pid);
        const t0 = now();
        let next = 0;
        let ok = 0;
        await Promise.all(
          Array.from({ length: 4 }, async () => {
            while (next < shas.length) if (await read(shas[next++])) ok++;
          }),
        );
        if (ok !== shas.length) throw new Error(`${way}: ${shas.length - ok} of ${shas.length} reads did not return the photo`);
        const wall = now() - t0;
        const c1 = process.cpuUsage(c0);
        const n1 = await cpuSeconds(nats.process.pid);
        await sleep(1000); // an ordered consumer is deleted after its read; what stays, stays
        const left = (await consumers()) - consumers0;
        rows[kind][way] = {
          msPerImage: (1000 * wall) / shas.length,
          clientCpuMs: (c1.user + c1.system) / 1000 / shas.length,
          natsCpuMs: (1000 * (n1 - n0)) / shas.length,
          ok,
          consumersLeft: left,
        };
        console.error(
          `fetch ${kind} by ${way}: ${rows[kind][way].msPerImage.toFixed(2)} ms per photo, client CPU ${rows[kind][way].clientCpuMs.toFixed(2)} ms, nats-server ${rows[kind][way].natsCpuMs.toFixed(2)} ms, ${left} consumers left of ${shas.length} reads`,
        );
      }
    }
    return rows;
  } finally {
    await bus.close();
    await nats.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

/** One job through a running cluster, measured: rate, CPU per image by process, stages, bytes. */
async function measuredJob(c, dir, model, label, extra = {}) {
  const n = (await imagesOf(dir)).length;
  const cpu0 = await Promise.all(c.pids.map(cpuSeconds));
  const m0 = await scrape(c.ports[0]);
  const b0 = await connectionBytes(c.nats.monitorPort);
  const t0 = now();
  const run = await runJob(c, dir, model, undefined, undefined, extra);
  const wall = now() - t0;
  const cpu1 = await Promise.all(c.pids.map(cpuSeconds));
  const m1 = await scrape(c.ports[0]);
  const b1 = await connectionBytes(c.nats.monitorPort);
  const cpu = cpu1.map((x, i) => (x - cpu0[i]) / n);
  const workerConn = (b) =>
    b
      .filter((x) => x.name.startsWith('graft-worker-'))
      .reduce((a, x) => ({ sent: a.sent + x.sent, received: a.received + x.received }), { sent: 0, received: 0 });
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
    prepared: { reused: m1.preparedReused - m0.preparedReused, made: m1.preparedMade - m0.preparedMade },
    counts: { ...run.status.counts },
  };
  r.imagesPerCoreSecond = 1 / r.cpuPerImage.total;
  console.error(
    `${label}: ${r.imagesPerSecond.toFixed(1)} img/s, ${(1000 * r.cpuPerImage.total).toFixed(1)} ms CPU per image (worker ${(1000 * r.cpuPerImage.worker).toFixed(1)}), ${(r.bytesPerImage.workerReceived / 1e3).toFixed(0)} KB in per image, prepared ${r.prepared.made} made / ${r.prepared.reused} reused`,
  );
  return r;
}

/** One worker with the zero-cost backbones: the jobs given, in order, on one cluster (so later jobs find what earlier ones prepared). */
async function ceilingRuns(work, jobs, workerArgs = []) {
  const c = await cluster(work, 1, jobs[0].model, workerArgs);
  try {
    // Before each timed job a tiny one on its backbone: the model is loaded and the worker is pulling
    // from that backbone's queue (a job on another backbone would first wait out a pull on the last one's).
    const out = [];
    for (const j of jobs) {
      await c.warm(j.model);
      out.push(await measuredJob(c, j.dir, j.model, j.label, j.extra));
    }
    return out;
  } finally {
    await c.stop();
  }
}

/** The pipeline section of the benchmark. */
export async function benchPipeline(work, data, { quick }) {
  console.error('\n== the worker pipeline with a zero-cost backbone');
  const model = await zeroCostModel(join(work, 'zero-model'));
  const other = await zeroCostModel(join(work, 'zero-model-2'), { seed: 2 });
  const third = await zeroCostModel(join(work, 'zero-model-3'), { seed: 3 });
  const smallDir = data.splits ? await subset(data.dir, quick ? 10 : 40, work, 'pipeline-small') : data.dir;
  const small = await imagesOf(smallDir);
  const t0 = now();
  const largeDir = await phonePhotos(small, quick ? 12 : 40, join(work, 'phone'));
  const large = await imagesOf(largeDir);
  const sizes = await Promise.all(large.map(async (f) => (await readFile(f)).byteLength));
  console.error(
    `generated ${large.length} 12 MP photos (${(sizes.reduce((a, b) => a + b, 0) / sizes.length / 1e6).toFixed(1)} MB each on average) in ${(now() - t0).toFixed(0)} s`,
  );

  const decode = await decodeRows(small, large);
  const fetch = await fetchRows(work, small, large);
  const smallName = data.splits ? 'clothing-small' : 'generated';
  const [small0, large0] = await ceilingRuns(
    work,
    [
      { dir: smallDir, model, label: `small photos (${smallName}), originals only (--no-prepared-inputs)` },
      { dir: largeDir, model, label: '12 MP photos as published, originals only (--no-prepared-inputs)' },
    ],
    ['--no-prepared-inputs'],
  );
  const [smallFirst, largeFirst, largePrepared] = await ceilingRuns(work, [
    { dir: smallDir, model, label: `small photos (${smallName}), first job (no prepared copies: each photo is smaller than its copy)` },
    { dir: largeDir, model, label: '12 MP photos as published, first job: originals, prepared inputs made' },
    { dir: largeDir, model: other, label: '12 MP photos, a later backbone at 224 px: prepared inputs' },
  ]);
  const [largeShrunk] = await ceilingRuns(work, [
    {
      dir: largeDir,
      model: third,
      label: '12 MP photos, graft publish --max-side 512 (first job)',
      extra: { maxSide: 512, shrinkCacheDir: join(work, 'shrunk') },
    },
  ]);
  const runs = { small: small0, smallFirst, large: large0, largeFirst, largePrepared, largeShrunk };
  const sizing = {};
  for (const [kind, r] of Object.entries(runs)) {
    sizing[kind] = Object.fromEntries(
      Object.entries(GPU_RATES).map(([name, rate]) => [name, { cores: rate * r.cpuPerImage.total, workerCores: rate * r.cpuPerImage.worker }]),
    );
  }
  return { photoMB: sizes.reduce((a, b) => a + b, 0) / sizes.length / 1e6, decode, fetch, runs, sizing };
}
