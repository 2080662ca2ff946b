#!/usr/bin/env node
// graft's benchmark: every figure measured in this one run on this machine, then written to
// bench/results/<backbone>.json and BENCHMARKS.md. Not a test: `npm run bench`.
//
//   node bench/run.mjs [--images N] [--backbones default,shared] [--sections pipeline,backbones,head,sweep,audit,tracking,scale,training] [--quick]
//
// Uses ../shared/datasets/clothing-small when present, else a generated photo set.
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { evaluatePredictions, loadHeadModel, packageModel, predict, trainHead } from '@graft/head';
import { VectorDType, codecs, decodeVector, encodeVector, readManifest, vectorKey } from '@graft/protocol';
import { decodeImage, initBackend, loadBackbone, parseBackbone } from '@graft/vision';
import * as tf from '@tensorflow/tfjs';
import { ROOT, SHARED, cluster, dataset, imagesOf, now, runJob, scrape, subset } from './lib.mjs';
import { benchPipeline } from './pipeline.mjs';
import { benchSweep } from './sweep.mjs';
import { benchAudit } from './audit.mjs';
import { benchTracking } from './tracking.mjs';
import { benchScale } from './scale.mjs';
import { benchTraining } from './training-memory.mjs';

const { values: args } = parseArgs({ options: { images: { type: 'string' }, backbones: { type: 'string' }, quick: { type: 'boolean' }, sections: { type: 'string' } } });

async function benchBackbone(label, spec, dir, work, opts) {
  console.error(`\n== ${label}: ${spec}`);
  const files = (await imagesOf(dir)).slice(0, opts.images);
  const r = { label, spec, images: files.length };
  await initBackend();
  const backbone = await loadBackbone(parseBackbone(spec, spec.includes('/') ? { preprocess: spec.includes('mobilenet') ? 'symmetric' : 'unit' } : {}), { allowFiles: true });
  const size = backbone.info.inputSize;
  r.backbone = { id: backbone.info.id, dim: backbone.info.dim, inputSize: size, fingerprint: backbone.info.fingerprint };

  // 1. bare loop: pre-decoded pixels, batches of 8, the backbone alone.
  const pixels = [];
  for (const f of files) pixels.push(await decodeImage(new Uint8Array(await readFile(f)), size).catch(() => undefined));
  const good = pixels.filter(Boolean);
  await backbone.embed(good.slice(0, 8));
  let t = now();
  for (let i = 0; i < good.length; i += 8) await backbone.embed(good.slice(i, i + 8));
  r.bareLoop = good.length / (now() - t);
  console.error(`bare loop: ${r.bareLoop.toFixed(2)} img/s`);

  // Memory: the tensor count after 100 images and after 1,000 (for backbones fast enough).
  if (r.bareLoop > 5) {
    let n = 0;
    let at100;
    while (n < 1000) {
      for (let i = 0; i < good.length && n < 1000; i += 8) {
        await backbone.embed(good.slice(i, i + 8));
        n += Math.min(8, good.length - i);
        if (at100 === undefined && n >= 100) at100 = tf.memory().numTensors;
      }
    }
    r.tensors = { after100: at100, after1000: tf.memory().numTensors, rssMiB: Math.round(process.memoryUsage().rss / 2 ** 20) };
    console.error(`tensors after 100 images: ${at100}, after 1000: ${r.tensors.after1000}`);
  }

  // 2. the seed's way: read, decode, infer, one image at a time.
  const seedN = Math.min(files.length, opts.seedImages);
  t = now();
  for (const f of files.slice(0, seedN)) {
    const px = await decodeImage(new Uint8Array(await readFile(f)), size).catch(() => undefined);
    if (px) await backbone.embed([px]);
  }
  r.seedWay = seedN / (now() - t);
  console.error(`seed's way: ${r.seedWay.toFixed(2)} img/s`);
  backbone.dispose();

  // 3-5. graft through NATS: one worker, two workers, then the same job fully cached.
  for (const workers of [1, 2]) {
    const c = await cluster(work, workers, spec);
    try {
      await c.warm();
      const base = await Promise.all(c.ports.map(scrape));
      const run = await runJob(c, dir, spec, undefined);
      const after = await Promise.all(c.ports.map(scrape));
      const rate = files.length / run.seconds;
      const split = ['fetch', 'decode', 'infer', 'publish'].map((k) => [k, after.reduce((a, m, i) => a + m[k] - base[i][k], 0)]);
      r[`workers${workers}`] = { seconds: run.seconds, imagesPerSecond: rate, split: Object.fromEntries(split), rssBytes: after.map((m) => m.rss) };
      console.error(`${workers} worker(s): ${rate.toFixed(2)} img/s (${run.seconds.toFixed(1)} s)`);
      if (workers === 2) {
        const callsBefore = (await Promise.all(c.ports.map(scrape))).reduce((a, m) => a + m.calls, 0);
        const again = await runJob(c, dir, spec, undefined);
        const callsAfter = (await Promise.all(c.ports.map(scrape))).reduce((a, m) => a + m.calls, 0);
        r.cached = { seconds: again.seconds, backboneCalls: callsAfter - callsBefore, ratioToFirst: again.seconds / run.seconds, counts: { ...again.status.counts } };
        console.error(`cached rerun: ${again.seconds.toFixed(2)} s, ${callsAfter - callsBefore} backbone calls`);
      }
    } finally {
      await c.stop();
    }
  }
  return r;
}

/** Head training speed, and float16 vs float32 test accuracy on the full dataset's vectors. */
async function benchHead(spec, data, work) {
  console.error(`\n== head training and float16 on ${data.name}`);
  const c = await cluster(work, 2, spec);
  try {
    const run = await runJob(c, data.dir, spec, data.splits);
    const s = run.status;
    // The manifest's image list may be in pages: read it as the coordinator does.
    const m = await readManifest(c.bus, run.jobId);
    const fp = s.backbone.fingerprint;
    const sets = { 1: { x: [], y: [] }, 2: { x: [], y: [] }, 3: { x: [], y: [] } };
    const classIndex = new Map(m.classes.map((c, i) => [c, i]));
    for (const img of m.images) {
      const e = await c.bus.vectors.get(vectorKey(fp, img.sha256));
      if (!e) continue;
      const v = codecs.cachedVector.decode(e.value);
      if (v.errorCode) continue;
      sets[img.split].x.push(decodeVector(v.vector, v.dim, v.dtype));
      sets[img.split].y.push(classIndex.get(img.label));
    }
    const half = (xs) => xs.map((x) => decodeVector(encodeVector(x, VectorDType.VECTOR_DTYPE_FLOAT16), x.length, VectorDType.VECTOR_DTYPE_FLOAT16));
    const result = { vectors: { train: sets[1].x.length, validation: sets[2].x.length, test: sets[3].x.length }, dim: s.backbone.dim, classes: m.classes.length };
    for (const [name, conv] of [['float32', (x) => x], ['float16', half]]) {
      const data16 = { dim: s.backbone.dim, classes: m.classes, train: { x: conv(sets[1].x), y: sets[1].y }, validation: { x: conv(sets[2].x), y: sets[2].y } };
      const t0 = now();
      const head = await trainHead(data16, { epochs: 30, patience: 0 });
      const secondsPerEpoch = (now() - t0) / 30;
      const folder = await packageModel(head, { ...s.backbone, preprocess: 'unit', format: 'layers' }, evaluatePredictions([], [], m.classes));
      const model = await loadHeadModel(folder);
      const report = evaluatePredictions(await predict(model, conv(sets[3].x), s.backbone.dim), sets[3].y, m.classes);
      model.dispose();
      result[name] = { top1: report.top1, secondsPerEpoch };
      console.error(`${name}: test top-1 ${(100 * report.top1).toFixed(2)}%, ${secondsPerEpoch.toFixed(3)} s/epoch`);
    }
    result.float16CostPoints = 100 * (result.float32.top1 - result.float16.top1);
    return result;
  } finally {
    await c.stop();
  }
}

const quick = Boolean(args.quick);
const work = await mkdtemp(join(tmpdir(), 'graft-bench-'));
try {
  const data = await dataset(work);
  const machine = { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, node: process.version, backend: (await initBackend()).name, date: new Date().toISOString() };
  console.error(`machine: ${machine.cores} x ${machine.cpu}, backend ${machine.backend}; data: ${data.name}`);
  const sharedModel = join(SHARED, 'models/mobilenet_v2_0.35_224');
  const wanted = (args.backbones ?? 'shared,default').split(',');
  const sections = (args.sections ?? 'pipeline,backbones,head,sweep,audit,tracking,scale,training').split(',');
  const pipeline = sections.includes('pipeline') ? await benchPipeline(work, data, { quick }) : undefined;
  const results = [];
  if (sections.includes('backbones') && wanted.includes('shared') && existsSync(sharedModel)) {
    const dir = data.splits ? await subset(data.dir, quick ? 20 : 60, work, 'shared') : data.dir;
    results.push(await benchBackbone('MobileNetV2-0.35 (shared, 1280-d)', sharedModel, dir, work, { images: Number(args.images ?? 1e9), seedImages: quick ? 50 : 200 }));
  }
  if (sections.includes('backbones') && wanted.includes('default')) {
    const dir = await subset(data.dir, quick ? 3 : 12, work, 'default');
    results.push(await benchBackbone('InceptionV3 to mixed5 (embedded, 768-d)', 'inception_v3_mixed5', dir, work, { images: Number(args.images ?? 1e9), seedImages: quick ? 8 : 40 }));
  }
  const head = sections.includes('head') && wanted.includes('shared') && existsSync(sharedModel) && !quick ? await benchHead(sharedModel, data, work) : undefined;
  const sweep = sections.includes('sweep') && existsSync(sharedModel) && data.splits && !quick ? await benchSweep(work, data, sharedModel) : undefined;
  const audit = sections.includes('audit') && existsSync(sharedModel) && data.splits && !quick ? await benchAudit(work, data, sharedModel) : undefined;
  const tracking = sections.includes('tracking') ? await benchTracking(quick ? [100_000] : [100_000, 1_000_000]) : undefined;
  const scale = sections.includes('scale') ? await benchScale(work, { quick }) : undefined;
  const training = sections.includes('training') ? await benchTraining({ quick }) : undefined;
  // A run of some sections keeps the other sections' figures from the last full run (said in BENCHMARKS.md).
  const previous = args.sections ? JSON.parse(await readFile(join(ROOT, 'bench/results/latest.json'), 'utf8').catch(() => '{}')) : {};
  const kept = (k, v) => (v === undefined || (Array.isArray(v) && v.length === 0) ? previous[k] : v);
  const out = { machine, data: data.name, results: kept('results', results), head: kept('head', head), pipeline: kept('pipeline', pipeline), sweep: kept('sweep', sweep), audit: kept('audit', audit), tracking: kept('tracking', tracking), scale: kept('scale', scale), training: kept('training', training), sections: args.sections ? { measured: sections, previousMachine: previous.machine } : undefined };
  await mkdir(join(ROOT, 'bench/results'), { recursive: true });
  await writeFile(join(ROOT, 'bench/results/latest.json'), `${JSON.stringify(out, null, 2)}\n`);
  const { renderMarkdown } = await import('./report.mjs');
  const md = renderMarkdown(out);
  await writeFile(join(ROOT, 'BENCHMARKS.md'), md);
  process.stdout.write(md);
} finally {
  await rm(work, { recursive: true, force: true });
}
