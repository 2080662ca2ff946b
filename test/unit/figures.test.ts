import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ROOT } from '../helpers/fixtures.js';

/*
 * The README's measured figures come from bench/results/latest.json (what BENCHMARKS.md renders):
 * each figure the README quotes is recomputed from the JSON here, so a new bench run that changes
 * one fails this test until the README says the new value.
 */

const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
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
      `top-1 from ${pct(ten.top1)} back to ${pct(ten.cleanedTop1)} (${pct(ten.cleanTop1)} with clean labels)`,
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
      `${ms(r.smallPrepared.cpuPerImage.total)} ms per small photo (${(1 / r.smallPrepared.cpuPerImage.total).toFixed(0)} per`,
      `for InceptionV3 ${inception('small')} worker cores on small photos from`,
      `originals, ${inception('smallPrepared')} from prepared inputs, ${inception('large')} on phone photos as published and ${inception('largePrepared')} once prepared`,
    ]);
  });
});
