// graft audit on clothing-small: labels of 5 %, 10 % and 20 % of the training photos flipped (seeded),
// 100 near-copies injected across splits; precision and recall of what the audit flags, against a
// plain reference on the same out-of-sample probabilities, its time, and 0 backbone calls.
// Part of `npm run bench` (`--sections audit` runs only this).
import { createRequire } from 'node:module';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { findLabelIssues, nearestNeighbours, normalizedMargin, outOfSampleProbabilities, resolveTrainOptions, seededRandom, unitRows } from '@graft/head';
import { artifactNames, codecs, decodeVector, readManifest, vectorKey } from '@graft/protocol';
import { cluster, now, runJob, scrape } from './lib.mjs';

const sharp = createRequire(import.meta.url)('sharp');
const SPLITS = { train: 'train', validation: 'validation', test: 'test' };

async function readJson(c, jobId, file) {
  const bytes = await c.bus.artifacts.getBlob(artifactNames.modelFile(jobId, file));
  return bytes ? JSON.parse(Buffer.from(bytes).toString('utf8')) : undefined;
}
const calls = async (c) => (await Promise.all(c.ports.map(scrape))).reduce((a, m) => a + m.calls, 0);

/** The photos of clothing-small with their splits: [{ path, label, split }]. */
async function photos(data) {
  const rows = (await readFile(data.splits, 'utf8'))
    .trim()
    .split('\n')
    .map((l) => l.split('\t'));
  return rows.map(([rel, split]) => ({ path: join(data.dir, rel), label: rel.split('/')[0], split: SPLITS[split.trim()] }));
}

/** 100 near-copies (re-encoded at another quality, resized, flipped, 10 % cropped: one of each in turn), each in another split than its original. */
async function nearCopies(list, dir, n) {
  await mkdir(dir, { recursive: true });
  const rng = seededRandom(7);
  const picked = new Set();
  while (picked.size < n) picked.add(Math.floor(rng() * list.length));
  const out = [];
  let k = 0;
  for (const i of picked) {
    const o = list[i];
    const kind = ['reencoded', 'resized', 'flipped', 'cropped'][k % 4];
    let img = sharp(o.path).rotate();
    const m = await sharp(o.path).metadata();
    if (kind === 'reencoded') img = img.jpeg({ quality: 55 });
    if (kind === 'resized') img = img.resize(Math.round(m.width * 0.6)).jpeg({ quality: 85 });
    if (kind === 'flipped') img = img.flop().jpeg({ quality: 90 });
    if (kind === 'cropped')
      img = img
        .extract({ left: Math.round(m.width * 0.05), top: Math.round(m.height * 0.05), width: Math.round(m.width * 0.9), height: Math.round(m.height * 0.9) })
        .jpeg({ quality: 90 });
    const path = join(dir, `copy-${k}-${kind}.jpg`);
    await img.toFile(path);
    out.push({ path, label: o.label, split: o.split === 'test' ? 'train' : 'test', original: o.path, kind });
    k++;
  }
  return out;
}

/** A copy of the list with `fraction` of its training photos given another class at random (seeded). */
function flipped(list, classes, fraction, seed) {
  const rng = seededRandom(seed);
  const train = list.map((p, i) => i).filter((i) => list[i].split === 'train');
  const n = Math.round(fraction * train.length);
  for (let i = train.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [train[i], train[j]] = [train[j], train[i]];
  }
  const flip = new Set(train.slice(0, n));
  return {
    list: list.map((p, i) => (flip.has(i) ? { ...p, label: classes.filter((c) => c !== p.label)[Math.floor(rng() * (classes.length - 1))] } : p)),
    flipped: new Set([...flip].map((i) => list[i].path)),
  };
}

async function writeList(list, file) {
  await writeFile(file, `path,label,split\n${list.map((p) => `${p.path},${p.label},${p.split}`).join('\n')}\n`);
  return file;
}

/** Precision and recall of a flagged set against the truth. */
const score = (flagged, truth) => {
  const tp = flagged.filter((p) => truth.has(p)).length;
  return { flagged: flagged.length, precision: flagged.length ? tp / flagged.length : 0, recall: truth.size ? tp / truth.size : 0 };
};

/** The job's cached vectors and labels, in the audit's order (failed photos left out). */
async function vectorsOf(c, jobId, fp) {
  const m = await readManifest(c.bus, jobId);
  const idx = new Map(m.classes.map((x, i) => [x, i]));
  const out = { paths: [], x: [], y: [], classes: m.classes };
  // The coordinator's audit order (train, validation, test), so the folds are the audit's own.
  const images = [1, 2, 3].flatMap((split) => m.images.filter((img) => img.split === split));
  for (const img of images) {
    const e = await c.bus.vectors.get(vectorKey(fp, img.sha256));
    const v = e && codecs.cachedVector.decode(e.value);
    if (!v || v.errorCode) continue;
    out.paths.push(img.path);
    out.x.push(decodeVector(v.vector, v.dim, v.dtype));
    out.y.push(idx.get(img.label));
  }
  return out;
}

/** Confident learning's variants and the reference, recomputed on the audit's own out-of-sample probabilities. */
async function labelIssueTable(v, truth, dim, folds) {
  const C = v.classes.length;
  const t0 = now();
  const probs = await outOfSampleProbabilities(v.x, v.y, dim, v.classes, folds, {}, { parallel: 2 });
  const foldSeconds = now() - t0;
  const flagged = (filter, count) => findLabelIssues(probs, v.y, C, filter, count).flagged.map((i) => v.paths[i]);
  const counts = findLabelIssues(probs, v.y, C).errorCounts;
  const argmax = (i) => [...Array(C).keys()].reduce((b, c) => (probs[i * C + c] > probs[i * C + b] ? c : b), 0);
  const margins = v.y.map((y, i) => [i, normalizedMargin(probs, C, i, y).margin]).sort((a, b) => a[1] - b[1]);
  const selfConf = v.y.map((y, i) => [i, probs[i * C + y]]).sort((a, b) => a[1] - b[1]);
  const top = (ranked, n) => ranked.slice(0, n).map(([i]) => v.paths[i]);
  return {
    foldSeconds,
    counts,
    rows: [
      { method: 'lowest self-confidence, as many as graft audit counts (its default)', ...score(flagged('low_self_confidence'), truth) },
      { method: 'lowest self-confidence, as many as the mixture estimate alone', ...score(flagged('low_self_confidence', 'mixture'), truth) },
      {
        method: "lowest self-confidence, as many as the confident joint's off-diagonal (graft before; cleanlab's low_self_confidence)",
        ...score(flagged('low_self_confidence', 'confident_joint'), truth),
      },
      { method: "lowest self-confidence, as many as the calibrated joint's off-diagonal", ...score(flagged('low_self_confidence', 'calibrated_joint'), truth) },
      { method: 'confident learning C+NR (the paper)', ...score(flagged('both'), truth) },
      { method: 'confident learning PBNR (the paper; cleanlab default)', ...score(flagged('prune_by_noise_rate'), truth) },
      { method: 'confident learning PBC (the paper)', ...score(flagged('prune_by_class'), truth) },
      {
        method: 'reference: predicted class is not the given label',
        ...score(
          v.y
            .map((y, i) => i)
            .filter((i) => argmax(i) !== v.y[i])
            .map((i) => v.paths[i]),
          truth,
        ),
      },
      { method: `ranking by self-confidence, top ${truth.size} (as many as were flipped)`, ...score(top(selfConf, truth.size), truth) },
      { method: `ranking by normalized margin, top ${truth.size}`, ...score(top(margins, truth.size), truth) },
    ],
  };
}

/** Near-copy recall and pair precision at several thresholds, from the same neighbour search the audit runs: how its threshold was chosen. */
async function thresholdTable(v, copies, dim) {
  const rows = unitRows(v.x, dim);
  const nn = await nearestNeighbours(rows, dim, 8);
  const at = new Map(v.paths.map((p, i) => [p, i]));
  const truth = new Set(
    copies.filter((k) => at.has(k.path) && at.has(k.original)).map((k) => [at.get(k.path), at.get(k.original)].sort((a, b) => a - b).join(' ')),
  );
  return [0.7, 0.75, 0.8, 0.85, 0.9, 0.95].map((t) => {
    const pairs = new Set();
    for (let i = 0; i < v.x.length; i++)
      for (let r = 0; r < nn.k; r++)
        if (nn.index[i * nn.k + r] >= 0 && nn.similarity[i * nn.k + r] >= t) pairs.add([i, nn.index[i * nn.k + r]].sort((a, b) => a - b).join(' '));
    const hits = [...pairs].filter((p) => truth.has(p)).length;
    return { threshold: t, pairs: pairs.size, recall: hits / truth.size, precision: pairs.size ? hits / pairs.size : 0 };
  });
}

/** Similarity of each copy to its original and the highest similarity between distinct originals: what the threshold is set between. */
function copySimilarities(v, copies, dim) {
  const rows = unitRows(v.x, dim);
  const at = new Map(v.paths.map((p, i) => [p, i]));
  const sim = (a, b) => {
    let s = 0;
    for (let j = 0; j < dim; j++) s += rows[a * dim + j] * rows[b * dim + j];
    return s;
  };
  const copySims = copies.filter((k) => at.has(k.path) && at.has(k.original)).map((k) => ({ kind: k.kind, s: sim(at.get(k.path), at.get(k.original)) }));
  const q = (xs, p) => [...xs].sort((a, b) => a - b)[Math.floor(p * (xs.length - 1))];
  const byKind = Object.fromEntries(
    ['reencoded', 'resized', 'flipped', 'cropped'].map((kind) => [
      kind,
      q(
        copySims.filter((c) => c.kind === kind).map((c) => c.s),
        0,
      ),
    ]),
  );
  return {
    min: q(
      copySims.map((c) => c.s),
      0,
    ),
    p05: q(
      copySims.map((c) => c.s),
      0.05,
    ),
    median: q(
      copySims.map((c) => c.s),
      0.5,
    ),
    minByKind: byKind,
  };
}

async function auditJob(c, list, file, spec, label, training = {}) {
  const before = await calls(c);
  const t0 = now();
  const run = await runJob(c, await writeList(list, file), spec, undefined, undefined, { training: { ...training }, list: { allowOutsidePaths: true } });
  const total = now() - t0;
  const report = await readJson(c, run.jobId, 'report.json');
  const audit = training.audit ? await readJson(c, run.jobId, 'audit.json') : undefined;
  const out = {
    label,
    jobId: run.jobId,
    top1: report.top1,
    totalSeconds: total,
    backboneCalls: (await calls(c)) - before,
    counts: { ...run.status.counts },
    audit,
  };
  console.error(
    `${label}: top-1 ${(100 * out.top1).toFixed(2)} %, ${out.backboneCalls} backbone calls${audit ? `, audit ${audit.seconds.toFixed(1)} s: ${audit.labelIssues.length} label issues, ${audit.duplicates.length} duplicate groups, ${audit.leaks.pairs.length} leaks, ${audit.outliers.length} outliers` : ''}`,
  );
  return out;
}

export async function benchAudit(work, data, spec) {
  console.error(`\n== audit on ${data.name}`);
  const list = await photos(data);
  const classes = [...new Set(list.map((p) => p.label))].sort();
  const copies = await nearCopies(list, join(work, 'near-copies'), 100);
  const c = await cluster(work, 2, spec);
  try {
    await c.warm();
    const clean = await auditJob(c, list, join(work, 'clean.csv'), spec, 'clean labels (extracts every photo)');
    const dup = await auditJob(c, [...list, ...copies], join(work, 'copies.csv'), spec, 'clean labels + 100 near-copies across splits', { audit: true });
    // Duplicates and leaks: a copy is found when it shares a group with its original.
    const group = new Map();
    dup.audit.duplicates.forEach((g, gi) => g.photos.forEach((p) => group.set(p.path, gi)));
    const found = copies.filter((k) => group.has(k.path) && group.get(k.path) === group.get(k.original)).length;
    const copyPaths = new Set(copies.flatMap((k) => [k.path, k.original]));
    const nearPairs = dup.audit.leaks.pairs.length;
    const leaked = dup.audit.leaks.pairs.filter((p) => copyPaths.has(p.a.path) && copyPaths.has(p.b.path)).length;
    const groupsWithCopy = dup.audit.duplicates.filter((g) => g.photos.some((p) => copyPaths.has(p.path))).length;
    const fp = (await readJson(c, dup.jobId, 'graft.json')).backbone;
    const dupVectors = await vectorsOf(c, dup.jobId, fp.fingerprint);
    const duplicates = {
      copies: copies.length,
      recall: found / copies.length,
      precision: dup.audit.duplicates.length ? groupsWithCopy / dup.audit.duplicates.length : 0,
      groups: dup.audit.duplicates.length,
      leakRecall: Math.min(1, leaked / copies.length),
      leakPrecision: nearPairs ? leaked / nearPairs : 0,
      leakedPairs: nearPairs,
      testAccuracy: dup.audit.leaks.testAccuracy,
      threshold: dup.audit.options.duplicateThreshold,
      similarities: copySimilarities(dupVectors, copies, fp.dim),
      thresholds: await thresholdTable(dupVectors, copies, fp.dim),
      auditSeconds: dup.audit.seconds,
    };
    console.error(
      `near-copies: recall ${duplicates.recall.toFixed(3)}, precision ${duplicates.precision.toFixed(3)} (${duplicates.groups} groups), leaks recall ${duplicates.leakRecall.toFixed(3)}`,
    );
    const noise = [];
    for (const fraction of [0.05, 0.1, 0.2]) {
      const f = flipped(list, classes, fraction, 11);
      const job = await auditJob(c, f.list, join(work, `noisy-${fraction}.csv`), spec, `${100 * fraction} % of training labels flipped`, { audit: true });
      const flaggedPaths = job.audit.labelIssues.map((l) => l.path);
      const v = await vectorsOf(c, job.jobId, fp.fingerprint);
      const table = await labelIssueTable(v, f.flipped, fp.dim, job.audit.options.folds);
      // What precision would be if the photos the audit flags with the original labels too (the set's own errors and look-alike classes) were not counted as wrong.
      const own = new Set(dup.audit.labelIssues.map((l) => l.path));
      const counted = flaggedPaths.filter((p) => f.flipped.has(p) || !own.has(p));
      const row = {
        fraction,
        flipped: f.flipped.size,
        top1: job.top1,
        audit: {
          seconds: job.audit.seconds,
          ...score(flaggedPaths, f.flipped),
          outliers: job.audit.outliers.length,
          alsoFlaggedWithOriginalLabels: flaggedPaths.length - counted.length,
          precisionWithoutThose: score(counted, f.flipped).precision,
        },
        backboneCalls: job.backboneCalls,
        extracted: job.counts.extracted ?? 0,
        table: table.rows,
        estimates: { ...table.counts, flipped: f.flipped.size },
      };
      if (fraction === 0.1) {
        // Only training and validation photos are left out: the test set stays the same, so the accuracies compare.
        const flaggedSet = new Set(job.audit.labelIssues.filter((l) => l.split !== 'test').map((l) => l.path));
        const cleaned = await auditJob(
          c,
          f.list.filter((p) => !flaggedSet.has(p.path)),
          join(work, 'cleaned.csv'),
          spec,
          'the 10 % job without its flagged training and validation photos',
        );
        row.cleanedLeftOut = flaggedSet.size;
        row.cleanedTop1 = cleaned.top1;
        row.cleanTop1 = clean.top1;
        row.recovered = clean.top1 - job.top1 > 0 ? (cleaned.top1 - job.top1) / (clean.top1 - job.top1) : undefined;
        row.cleanedBackboneCalls = cleaned.backboneCalls;
      }
      console.error(
        `${100 * fraction} %: precision ${row.audit.precision.toFixed(3)} recall ${row.audit.recall.toFixed(3)} (${row.audit.flagged} flagged of ${row.flipped}), audit ${row.audit.seconds.toFixed(1)} s, ${row.backboneCalls} backbone calls`,
      );
      noise.push(row);
    }
    return {
      backbone: spec,
      photos: list.length,
      classes: classes.length,
      folds: dup.audit.options.folds,
      headOptions: resolveTrainOptions({}, classes.length),
      duplicates,
      noise,
      cleanTop1: clean.top1,
    };
  } finally {
    await c.stop();
  }
}
