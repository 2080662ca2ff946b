import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ROOT } from '../helpers/fixtures.js';
import { allDocs } from '../helpers/docs.js';

/*
 * The docs' measured figures come from bench/results/latest.json (what BENCHMARKS.md renders):
 * each figure the README quotes is recomputed from the JSON here, so a new bench run that changes
 * one fails this test until the README says the new value.
 */

const readme = allDocs();
const bench = JSON.parse(readFileSync(join(ROOT, 'bench/results/latest.json'), 'utf8'));
const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
const fixed = (x: number, d: number) => x.toFixed(d);

/** Every phrase must appear in the README, written from the bench's own numbers. */
function quoted(phrases: string[]): void {
  for (const p of phrases) assert.ok(readme.includes(p), `the README quotes ${JSON.stringify(p)} (from bench/results/latest.json)`);
}

describe('README figures - backed by the bench', () => {
  it('the measured run on clothing-small: accuracy, split sizes, extraction time', () => {
    const plain = bench.sweep.plain;
    const v = bench.head.vectors;
    quoted([
      `**${pct(plain.top1)} top-1** on ${v.test} test images (${v.train.toLocaleString('en')} train, ${v.validation} validation)`,
      `${plain.counts.total.toLocaleString('en')} images in ${fixed(plain.extractSeconds, 0)} s with 2 workers; ${fixed(plain.totalSeconds, 0)} s from publishing`,
    ]);
  });

  it('sweeps and augmented vectors', () => {
    const w = bench.sweep;
    quoted([
      `today's default head ${pct(w.plain.top1)} test top-1`,
      `the sweep winner ${pct(w.sweep.top1)} (${w.sweep.sweep.heads} heads in ${fixed(w.sweep.sweep.seconds, 0)} s`,
      `${pct(w.augmented.top1)} (+${fixed(100 * (w.augmented.top1 - w.plain.top1), 1)} points; ${w.augmented.augmented.total.toLocaleString('en')} copies`,
    ]);
  });

  it('the audit: label errors, near-copies, leaks, time', () => {
    const a = bench.audit;
    const ten = a.noise.find((n: { fraction: number }) => n.fraction === 0.1);
    quoted([
      `${ten.audit.flagged} photos flagged, precision ${fixed(ten.audit.precision, 2)} and recall ${fixed(ten.audit.recall, 2)}`,
      `(${fixed(ten.audit.precisionWithoutThose, 2)} precision when the ${ten.audit.alsoFlaggedWithOriginalLabels} flagged photos`,
      `in ${fixed(ten.audit.seconds, 1)} s with ${ten.backboneCalls} backbone calls`,
      `top-1 from ${pct(ten.top1)} to ${pct(ten.cleanedTop1)} (${pct(ten.cleanTop1)} with clean labels)`,
      `recall ${fixed(a.duplicates.recall, 2)}, precision ${fixed(a.duplicates.precision, 2)}`,
      `test accuracy ${pct(a.duplicates.testAccuracy.all)} with the leaked copies, ${pct(a.duplicates.testAccuracy.withoutLeaked)} without them`,
    ]);
  });

  it("the coordinator's memory per photo", () => {
    const t = bench.tracking.at(-1);
    assert.equal(t.photos, 1_000_000);
    quoted([
      `its entries in columns (${fixed(t.entriesBytesPerPhoto, 0)} bytes per photo at 1,000,000\n  photos; ${fixed(t.manifestBytesPerPhoto, 0)} as the decoded list it held before)`,
      `(${fixed(t.trackingBytesPerPhoto, 0)} bytes per photo: an index and typed arrays; it was\n  ${fixed(t.oldTrackingBytesPerPhoto, 0)} with maps)`,
    ]);
  });

  it('jobs of any size: the scale section and head training at a million vectors', () => {
    const s = bench.scale;
    const t = bench.training;
    quoted([
      `${fixed(s.manifest.publishSeconds, 1)} s as ${s.manifest.pages} pages`,
      `${fixed(s.allRate, 0)} images/s over all of them against ${fixed(s.firstWindowRate, 0)}`,
      `moving again ${fixed(s.movingAgainSeconds, 1)} s later`,
      `training ${fixed(s.trainingStartSeconds, 1)} s after extraction`,
      `${fixed(s.statusSeconds, 2)} s. While`,
      `${fixed(s.heapBytesPerPhoto.atEnd, 0)} bytes per photo`,
      `(${fixed(t.heldBytesPerVector, 0)} bytes per 1,280-d vector measured)`,
      `${t.vectors.toLocaleString('en')} vectors trained an epoch in ${fixed(t.seconds, 0)} s`,
      `(${fixed(t.float16.heldBytesPerVector, 0)} bytes per vector, decoded a batch at a time: ${fixed(t.float16.seconds, 0)} s an epoch)`,
    ]);
  });

  it("the worker's own ceiling: CPU per photo, prepared inputs, GPU sizing", () => {
    const r = bench.pipeline.runs;
    const ms = (x: number) => (1000 * x).toFixed(1);
    const inception = (k: string) => bench.pipeline.sizing[k]['InceptionV3 (299 px)'].workerCores.toFixed(0);
    quoted([
      `costs ${ms(r.small.cpuPerImage.total)} ms of CPU per small photo (**${(1 / r.small.cpuPerImage.total).toFixed(0)} photos per CPU-second**)`,
      `${ms(r.large.cpuPerImage.total)} ms per 12 MP phone photo`,
      `${ms(r.largePrepared.cpuPerImage.total)} ms per phone photo in all, the worker's\nown part ${ms(r.largePrepared.cpuPerImage.worker)} ms`,
      `${ms(r.largeShrunk.cpuPerImage.total)} ms per photo on their first job`,
      `for InceptionV3 ${inception('small')} worker cores on small photos,\n${inception('large')} on phone photos as published and ${inception('largePrepared')} once prepared`,
    ]);
  });

  it('labelling the rest: the cost of the head on the coordinator, suggested against random', () => {
    const a = bench.active;
    const final = a.curves.random.at(-1);
    const ahead = a.curves.suggested.slice(1).filter((p: { top1: number }, i: number) => p.top1 > a.curves.random[i + 1].top1).length;
    quoted([
      `${fixed(a.head.microsPerPhoto, 1)} µs per photo for the default backbone`,
      `(${pct(final.top1)} with ${final.labels} labels) with\n${a.labelsToRandomFinal} labels (${fixed(100 * a.shareOfRandomLabels, 0)} % of them`,
      `ahead in ${ahead} of the ${a.rounds}\nrounds`,
    ]);
  });

  it('graft predict at scale: photos per second, the coordinator and the command', () => {
    const p = bench.predict;
    quoted([
      `${p.photos.toLocaleString('en')} photos with a\nbackbone that costs nothing`,
      `${fixed(p.photosPerSecond, 0)}\nphotos a second`,
      `at most\n${fixed(p.coordinatorHeapBytesPerPhoto, 0)} B of heap a photo`,
      `peak\n${fixed(p.cliPeakRss / 2 ** 20, 0)} MiB`,
    ]);
  });

  it('ONNX Runtime against wasm, and the default backbone against the one before', () => {
    const bare = Object.fromEntries(bench.backbones.bare.map((b: { id: string }) => [b.id, b]));
    const d = bare.mobilenet_v2_100;
    const job = bench.backbones.firstJob;
    const h = bench.head.defaultHead;
    quoted([
      `${fixed(d.onnx1.msPerImage, 1)} ms per photo on one thread against ${fixed(d.wasm.msPerImage, 1)} ms on TF.js\nwasm (${fixed(d.speedup, 1)}x; MobileNetV2-0.35 ${fixed(bare.mobilenet_v2_035.speedup, 1)}x, InceptionV3 ${fixed(bare.inception_v3_mixed5.speedup, 1)}x)`,
      `extracts ${fixed(job.onnx.imagesPerSecond, 1)} images/s against ${fixed(job.wasm.imagesPerSecond, 1)} with \`--backend wasm\` (${fixed(job.speedup, 2)}x`,
      `**${pct(h.mobilenet_v2_100.top1)} with the default backbone**`,
      `against\n${pct(h.mobilenet_v2_035.top1)} with the embedded MobileNetV2-0.35`,
      `(${pct(bench.head.float32.top1)} both ways with the default backbone)`,
    ]);
  });
});
