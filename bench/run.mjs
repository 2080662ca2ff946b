#!/usr/bin/env node
// graft's benchmark: every figure measured in this one run on this machine, then written to
// bench/results/<backbone>.json and BENCHMARKS.md. Not a test: `npm run bench`.
//
//   node bench/run.mjs [--sections backbones,pipeline,head,active,predict,sweep,audit,tracking,scale,training,gpu] [--quick]
//
// Uses ../shared/datasets/clothing-small when present, else a generated photo set.
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { evaluatePredictions, loadHeadModel, packageModel, predict, trainHead } from '@graft/head';
import { VectorDType, codecs, decodeVector, encodeVector, readManifest, vectorKey } from '@graft/protocol';
import { DEFAULT_ID, initBackend } from '@graft/vision';
import { ROOT, SHARED, cluster, dataset, now, runJob } from './lib.mjs';
import { benchBackbones } from './backbones.mjs';
import { benchGpu } from './gpu.mjs';
import { benchPipeline } from './pipeline.mjs';
import { benchSweep } from './sweep.mjs';
import { benchAudit } from './audit.mjs';
import { benchTracking } from './tracking.mjs';
import { benchScale } from './scale.mjs';
import { benchTraining } from './training-memory.mjs';
import { benchActive } from './active.mjs';
import { benchPredictScale } from './predict-scale.mjs';

const { values: args } = parseArgs({ options: { quick: { type: 'boolean' }, sections: { type: 'string' } } });

/** The default head's test top-1 on the full dataset with a backbone, and its vectors (for head training and float16). */
async function datasetJob(spec, data, work) {
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
    return { status: s, classes: m.classes, sets, defaultHeadTop1: s.evaluation?.top1, extractSeconds: run.seconds };
  } finally {
    await c.stop();
  }
}

/** Head training speed, float16 vs float32 test accuracy, and the default backbone against the old one, on the full dataset. */
async function benchHead(data, work) {
  console.error(`\n== head training, float16 and the default backbone on ${data.name}`);
  const job = await datasetJob(DEFAULT_ID, data, work);
  const old = await datasetJob('mobilenet_v2_035', data, work);
  const { status: s, sets, classes: names } = job;
  const half = (xs) => xs.map((x) => decodeVector(encodeVector(x, VectorDType.VECTOR_DTYPE_FLOAT16), x.length, VectorDType.VECTOR_DTYPE_FLOAT16));
  const result = {
    backbone: DEFAULT_ID,
    vectors: { train: sets[1].x.length, validation: sets[2].x.length, test: sets[3].x.length },
    dim: s.backbone.dim,
    classes: names.length,
  };
  result.defaultHead = {
    [DEFAULT_ID]: { top1: job.defaultHeadTop1, extractSeconds: job.extractSeconds },
    mobilenet_v2_035: { top1: old.defaultHeadTop1, extractSeconds: old.extractSeconds },
  };
  console.error(
    `default head, test top-1: ${DEFAULT_ID} ${(100 * job.defaultHeadTop1).toFixed(2)} %, mobilenet_v2_035 ${(100 * old.defaultHeadTop1).toFixed(2)} %`,
  );
  for (const [name, conv] of [
    ['float32', (x) => x],
    ['float16', half],
  ]) {
    const data16 = { dim: s.backbone.dim, classes: names, train: { x: conv(sets[1].x), y: sets[1].y }, validation: { x: conv(sets[2].x), y: sets[2].y } };
    const t0 = now();
    const head = await trainHead(data16, { epochs: 30, patience: 0 });
    const secondsPerEpoch = (now() - t0) / 30;
    const folder = await packageModel(head, { ...s.backbone, preprocess: 'unit', format: 'layers' }, evaluatePredictions([], [], names));
    const model = await loadHeadModel(folder);
    const report = evaluatePredictions(await predict(model, conv(sets[3].x), s.backbone.dim), sets[3].y, names);
    model.dispose();
    result[name] = { top1: report.top1, secondsPerEpoch };
    console.error(`${name}: test top-1 ${(100 * report.top1).toFixed(2)}%, ${secondsPerEpoch.toFixed(3)} s/epoch`);
  }
  result.float16CostPoints = 100 * (result.float32.top1 - result.float16.top1);
  return result;
}

const quick = Boolean(args.quick);
const work = await mkdtemp(join(tmpdir(), 'graft-bench-'));
try {
  const data = await dataset(work);
  const choice = await initBackend();
  const machine = {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    node: process.version,
    backend: choice.onnx ? `onnxruntime/${choice.onnx.provider}` : choice.name,
    tfjs: choice.tfjs,
    date: new Date().toISOString(),
  };
  console.error(`machine: ${machine.cores} x ${machine.cpu}, backbones on ${machine.backend}, TF.js ${machine.tfjs}; data: ${data.name}`);
  const sharedModel = join(SHARED, 'models/mobilenet_v2_0.35_224');
  const sections = (args.sections ?? 'backbones,pipeline,head,active,predict,sweep,audit,tracking,scale,training,gpu').split(',');
  const backbones = sections.includes('backbones') ? await benchBackbones(work, data, { quick }) : undefined;
  const pipeline = sections.includes('pipeline') ? await benchPipeline(work, data, { quick }) : undefined;
  const head = sections.includes('head') && data.splits && !quick ? await benchHead(data, work) : undefined;
  const active = sections.includes('active') && data.splits && !quick ? await benchActive(await datasetJob(DEFAULT_ID, data, work)) : undefined;
  const predictScale = sections.includes('predict') ? await benchPredictScale(work, { quick }) : undefined;
  const gpu = sections.includes('gpu') ? await benchGpu(work, data, { quick }) : undefined;
  const sweep = sections.includes('sweep') && existsSync(sharedModel) && data.splits && !quick ? await benchSweep(work, data, sharedModel) : undefined;
  const audit = sections.includes('audit') && data.splits && !quick ? await benchAudit(work, data, DEFAULT_ID) : undefined;
  const tracking = sections.includes('tracking') ? await benchTracking(quick ? [100_000] : [100_000, 1_000_000]) : undefined;
  const scale = sections.includes('scale') ? await benchScale(work, { quick }) : undefined;
  const training = sections.includes('training') ? await benchTraining({ quick }) : undefined;
  // A run of some sections keeps the other sections' figures from the last full run (said in BENCHMARKS.md).
  const previous = args.sections ? JSON.parse(await readFile(join(ROOT, 'bench/results/latest.json'), 'utf8').catch(() => '{}')) : {};
  const kept = (k, v) => (v === undefined || (Array.isArray(v) && v.length === 0) ? previous[k] : v);
  const out = {
    machine,
    data: data.name,
    backbones: kept('backbones', backbones),
    gpu: kept('gpu', gpu),
    head: kept('head', head),
    active: kept('active', active),
    predict: kept('predict', predictScale),
    pipeline: kept('pipeline', pipeline),
    sweep: kept('sweep', sweep),
    audit: kept('audit', audit),
    tracking: kept('tracking', tracking),
    scale: kept('scale', scale),
    training: kept('training', training),
    sections: args.sections ? { measured: sections, previousMachine: previous.machine } : undefined,
  };
  // When each section was measured: a partial run keeps the dates of the sections it did not run.
  const today = machine.date.slice(0, 10);
  const before = previous.sectionDates ?? {};
  out.sectionDates = Object.fromEntries(
    Object.keys(out)
      .filter((k) => !['machine', 'data', 'sections', 'sectionDates'].includes(k) && out[k] !== undefined)
      .map((k) => [k, sections.includes(k) ? today : (before[k] ?? previous.machine?.date?.slice(0, 10) ?? today)]),
  );
  await mkdir(join(ROOT, 'bench/results'), { recursive: true });
  await writeFile(join(ROOT, 'bench/results/latest.json'), `${JSON.stringify(out, null, 2)}\n`);
  const { renderMarkdown } = await import('./report.mjs');
  const md = renderMarkdown(out);
  await writeFile(join(ROOT, 'BENCHMARKS.md'), md);
  process.stdout.write(md);
} finally {
  await rm(work, { recursive: true, force: true });
}
