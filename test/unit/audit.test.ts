import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import {
  Stopped,
  auditDataset,
  auditProblem,
  photosPerClass,
  calibratedJoint,
  classThresholds,
  findLabelIssues,
  fixesOf,
  foldOf,
  formatAudit,
  formatFixes,
  headProbabilities,
  loadHeadModel,
  nearestNeighbours,
  outOfSampleProbabilities,
  packageModel,
  parseFixes,
  predict,
  evaluatePredictions,
  seededRandom,
  trainHead,
  unitRows,
  type AuditPhoto,
} from '@graft/head';
import { initBackend, type ResolvedBackbone } from '@graft/vision';

/* The audit's parts on synthetic vectors: confident learning, folds, neighbours, findings, fixes. */

const gauss = (rng: () => number) => Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng());

/** C well-separated Gaussian clusters of `per` points in dim dimensions, each with a different spread (like photos: no two are the same). */
function clusters(C: number, per: number, dim: number, seed: number): { vectors: Float32Array[]; labels: number[] } {
  const rng = seededRandom(seed);
  // Centres close enough that distinct photos stay below the near-duplicate similarity, far enough (in 64-d) to classify.
  const centres = Array.from({ length: C }, () => Float32Array.from({ length: dim }, () => 1.5 * gauss(rng)));
  const vectors: Float32Array[] = [];
  const labels: number[] = [];
  for (let c = 0; c < C; c++)
    for (let i = 0; i < per; i++) {
      vectors.push(Float32Array.from(centres[c], (x) => x + 1.0 * gauss(rng)));
      labels.push(c);
    }
  return { vectors, labels };
}

describe('audit - confident learning', () => {
  it('flags planted label errors from out-of-sample probabilities, with the right suggestion, and leaves clean photos alone', () => {
    const rng = seededRandom(5);
    const C = 3;
    const n = 300;
    const labels: number[] = [];
    const truth: number[] = [];
    const probs = new Float32Array(n * C);
    for (let i = 0; i < n; i++) {
      truth.push(i % C);
      // A confident but imperfect classifier: 0.6 to 0.95 on the true class.
      const p = 0.6 + 0.35 * rng();
      for (let c = 0; c < C; c++) probs[i * C + c] = c === i % C ? p : (1 - p) / (C - 1);
      labels.push(i % C);
    }
    const planted = [3, 50, 121, 200, 277];
    for (const i of planted) {
      labels[i] = (truth[i] + 1) % C;
      // A photo filed under the wrong class still looks clearly like its own.
      for (let c = 0; c < C; c++) probs[i * C + c] = c === truth[i] ? 0.95 : 0.025;
    }
    const r = findLabelIssues(probs, labels, C);
    assert.deepEqual(
      [...r.flagged].sort((a, b) => a - b),
      planted,
    );
    for (const [k, i] of r.flagged.entries()) assert.equal(r.suggested[k], truth[i], `photo ${i} is suggested its true class`);
    const self = r.flagged.map((i) => probs[i * C + labels[i]]);
    assert.ok(
      self.every((p, k) => k === 0 || self[k - 1] <= p),
      'ranked by self-confidence, lowest first',
    );
    assert.ok(
      r.margins.every((m) => m < 0),
      'each flagged photo looks more like another class',
    );
    assert.equal(r.errorCounts.count, planted.length);
    // A classifier this sure scores the wrong labels below nearly every other photo: the mixture estimate doubles them, the confident joint does not.
    assert.ok(r.errorCounts.mixture > planted.length, `mixture ${r.errorCounts.mixture}`);
    assert.equal(r.errorCounts.confidentJoint, planted.length);
    assert.deepEqual(
      [...findLabelIssues(probs, labels, C, 'both').flagged].sort((a, b) => a - b),
      planted,
      'C+NR agrees',
    );
  });

  /** C classes in look-alike pairs (each odd class near the one before it), `fraction` of the labels moved to another class at random; K-fold probabilities from real heads. */
  async function lookAlikeSet(C: number, fraction: number, seed: number) {
    const rng = seededRandom(seed);
    const dim = 32;
    const centres = Array.from({ length: C }, () => Float32Array.from({ length: dim }, () => 1.5 * gauss(rng)));
    for (let c = 1; c < C; c += 2) centres[c] = Float32Array.from(centres[c - 1], (x) => x + 0.5 * gauss(rng));
    const vectors: Float32Array[] = [];
    const labels: number[] = [];
    for (let c = 0; c < C; c++)
      for (let i = 0; i < 60; i++) {
        vectors.push(Float32Array.from(centres[c], (x) => x + gauss(rng)));
        labels.push(c);
      }
    const order = labels.map((_, i) => i);
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(rng() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    const planted = new Set(order.slice(0, Math.round(fraction * labels.length)));
    for (const i of planted) labels[i] = (labels[i] + 1 + Math.floor(rng() * (C - 1))) % C;
    const classes = Array.from({ length: C }, (_, c) => `c${c}`);
    const probs = await outOfSampleProbabilities(vectors, labels, dim, classes, 5, { epochs: 30, patience: 0 }, { parallel: 1 });
    return { probs, labels, planted };
  }

  it('on look-alike classes it flags about as many photos as were planted: the confident joint alone counts their overlap as errors', async () => {
    const { probs, labels, planted } = await lookAlikeSet(10, 0.1, 1);
    const r = findLabelIssues(probs, labels, 10);
    const hits = r.flagged.filter((i) => planted.has(i)).length;
    const precision = hits / r.flagged.length;
    const recall = hits / planted.size;
    assert.ok(
      precision >= 0.8 && recall >= 0.8,
      `precision ${precision.toFixed(2)}, recall ${recall.toFixed(2)} (${r.flagged.length} flagged of ${planted.size})`,
    );
    assert.ok(r.errorCounts.confidentJoint > 1.3 * planted.size, `the joint's count ${r.errorCounts.confidentJoint} for ${planted.size}`);
    assert.ok(r.errorCounts.calibratedJoint >= r.errorCounts.confidentJoint, 'calibrating the joint counts more still');
  });

  it('on look-alike classes with clean labels it flags almost nothing', async () => {
    const { probs, labels } = await lookAlikeSet(10, 0, 5);
    const r = findLabelIssues(probs, labels, 10);
    assert.ok(r.flagged.length <= 0.01 * labels.length, `${r.flagged.length} of ${labels.length} clean photos flagged`);
  });

  it("thresholds are each class's mean self-confidence; the calibrated joint sums to 1 with rows in proportion to the given labels", () => {
    const probs = Float32Array.from([0.9, 0.1, 0.7, 0.3, 0.2, 0.8, 0.4, 0.6]);
    const labels = [0, 0, 1, 1];
    assert.deepEqual(
      classThresholds(probs, labels, 2).map((t) => +t.toFixed(3)),
      [0.8, 0.7],
    );
    const q = calibratedJoint(
      [
        [3, 1],
        [0, 2],
      ],
      [0, 0, 0, 1, 1, 1, 1, 1],
      2,
    );
    assert.ok(Math.abs(q.flat().reduce((a, b) => a + b, 0) - 1) < 1e-9);
    assert.ok(Math.abs(q[0][0] + q[0][1] - 3 / 8) < 1e-9, 'row 0 holds the 3 photos labelled 0');
  });

  it('refuses probabilities that do not match the labels', () => {
    assert.throws(() => findLabelIssues(new Float32Array(5), [0, 1], 3), /5 probabilities for 2 photos of 3 classes/);
  });
});

describe('audit - folds and out-of-sample probabilities', () => {
  before(() => initBackend({ preferred: 'cpu' }));

  it('folds are stratified, seeded and cover every photo', () => {
    const labels = Array.from({ length: 103 }, (_, i) => (i < 50 ? 0 : i < 90 ? 1 : 2));
    const f = foldOf(labels, 3, 5, 1);
    assert.deepEqual([...f], [...foldOf(labels, 3, 5, 1)], 'same seed, same folds');
    assert.notDeepEqual([...f], [...foldOf(labels, 3, 5, 2)]);
    for (let c = 0; c < 3; c++) {
      const counts = [0, 0, 0, 0, 0];
      labels.forEach((l, i) => l === c && counts[f[i]]++);
      assert.ok(Math.max(...counts) - Math.min(...counts) <= 1, `class ${c} spread evenly: ${counts}`);
    }
  });

  it('a photo is judged by a head that never saw it; stored folds resume to the same probabilities', async () => {
    const { vectors, labels } = clusters(3, 20, 8, 3);
    // One photo of class 0 labelled 1: a head that saw it could learn it; out of sample it looks like class 0.
    labels[4] = 1;
    const opts = { epochs: 30, patience: 0 };
    const stored = new Map<number, Float32Array>();
    const full = await outOfSampleProbabilities(vectors, labels, 8, ['a', 'b', 'c'], 4, opts, { parallel: 1, onFold: async (k, p) => void stored.set(k, p) });
    assert.equal(stored.size, 4);
    assert.ok(full[4 * 3] > full[4 * 3 + 1] && full[4 * 3] > full[4 * 3 + 2], `out of sample, photo 4 looks like its true class: ${full.slice(12, 15)}`);
    const partial = new Map([...stored].slice(0, 2));
    let trained = 0;
    const resumed = await outOfSampleProbabilities(vectors, labels, 8, ['a', 'b', 'c'], 4, opts, {
      parallel: 1,
      done: partial,
      onFold: async () => void trained++,
    });
    assert.equal(trained, 2, 'only the missing folds are trained');
    assert.deepEqual(
      [...resumed].map((x) => x.toFixed(5)),
      [...full].map((x) => x.toFixed(5)),
    );
    await assert.rejects(outOfSampleProbabilities(vectors, labels, 8, ['a', 'b', 'c'], 4, opts, { parallel: 1, shouldStop: () => true }), Stopped);
  });

  it('headProbabilities matches the exported model, hidden layer included', async () => {
    const { vectors, labels } = clusters(3, 10, 6, 9);
    const head = await trainHead(
      { dim: 6, classes: ['a', 'b', 'c'], train: { x: vectors, y: labels }, validation: { x: [], y: [] } },
      { epochs: 5, hiddenUnits: 4 },
    );
    const backbone = {
      id: 't',
      url: 'file:///t',
      dim: 6,
      inputSize: 4,
      preprocess: 'unit',
      fingerprint: '0123456789abcdef',
      format: 'layers',
    } as unknown as ResolvedBackbone;
    const model = await loadHeadModel(await packageModel(head, backbone, evaluatePredictions([], [], head.classes)));
    const expected = await predict(model, vectors, 6);
    model.dispose();
    const got = headProbabilities(head, vectors);
    expected.forEach((p, i) => p.forEach((v, c) => assert.ok(Math.abs(v - got[i * 3 + c]) < 1e-4, `row ${i} class ${c}: ${v} vs ${got[i * 3 + c]}`)));
  });
});

describe('audit - neighbours', () => {
  before(() => initBackend({ preferred: 'cpu' }));

  it("the blocked search finds each row's most similar other rows, as a brute-force search does", async () => {
    const rng = seededRandom(2);
    const dim = 16;
    const vectors = Array.from({ length: 60 }, () => Float32Array.from({ length: dim }, () => gauss(rng)));
    const rows = unitRows(vectors, dim);
    const nn = await nearestNeighbours(rows, dim, 3);
    for (let i = 0; i < 60; i++) {
      const sims = vectors
        .map((_, j) => [j, j === i ? -Infinity : [...Array(dim).keys()].reduce((s, d) => s + rows[i * dim + d] * rows[j * dim + d], 0)] as const)
        .sort((a, b) => b[1] - a[1]);
      assert.deepEqual(
        [...nn.index.subarray(i * 3, i * 3 + 3)],
        sims.slice(0, 3).map(([j]) => j),
        `row ${i}`,
      );
    }
    // Past the exact limit the search runs on a projection and rescores its candidates: near copies are still each other's nearest.
    const copies = [...vectors, ...vectors.slice(0, 10).map((v) => Float32Array.from(v, (x) => x + 0.01 * gauss(rng)))];
    const copyRows = unitRows(copies, dim);
    const projected = await nearestNeighbours(copyRows, dim, 3, undefined, 10);
    for (let i = 0; i < 10; i++) {
      assert.equal(projected.index[i * 3], 60 + i, `row ${i}: its copy first`);
      assert.ok(projected.similarity[i * 3] > 0.99, 'rescored on the full vectors');
    }
    const sub = await nearestNeighbours(rows, dim, 2, [5, 9, 11]);
    assert.ok(
      [...sub.index].every((j) => j >= 0 && j < 3),
      'a member search answers in member positions',
    );
  });
});

describe('audit - findings', () => {
  before(() => initBackend({ preferred: 'cpu' }));

  function planted() {
    const { vectors, labels } = clusters(3, 30, 64, 7);
    const photos: AuditPhoto[] = labels.map((label, i) => ({
      sha256: `sha${i}`,
      path: `${'abc'[label]}/${i}.jpg`,
      label,
      split: i % 5 === 0 ? 'test' : 'train',
    }));
    const rng = seededRandom(8);
    // An exact copy (same bytes) under another path, in the test split: a leak.
    photos.push({ sha256: 'sha1', path: 'a/copy-of-1.jpg', label: 0, split: 'test' });
    vectors.push(vectors[1]);
    // A near-copy (a slightly changed vector, other bytes) of photo 2, labelled alike, in validation.
    photos.push({ sha256: 'near', path: 'a/near-2.jpg', label: 0, split: 'validation' });
    vectors.push(Float32Array.from(vectors[2], (x) => x + 0.05 * gauss(rng)));
    // A photo far from everything, in class b.
    photos.push({ sha256: 'odd', path: 'b/screenshot.jpg', label: 1, split: 'train' });
    vectors.push(Float32Array.from({ length: 64 }, () => 12 * gauss(rng)));
    // A photo of class c labelled a.
    photos[70] = { ...photos[70], label: 0 };
    return { photos, vectors };
  }

  it('finds the wrong label, the exact and near duplicates, the leak across splits and the outlier', async () => {
    const { photos, vectors } = planted();
    const predicted = Int32Array.from(photos, (p, i) => (p.split !== 'test' ? -1 : i === 5 ? (p.label + 1) % 3 : p.label));
    const r = await auditDataset({ dim: 64, classes: ['a', 'b', 'c'], photos, vectors, options: { epochs: 100 }, predicted }, { parallel: 1 });
    assert.ok(
      r.labelIssues.some((l) => l.path === 'c/70.jpg' && l.label === 'a' && l.suggested === 'c'),
      JSON.stringify(r.labelIssues.slice(0, 3)),
    );
    const exact = r.duplicates.find((g) => g.kind === 'exact');
    assert.deepEqual(exact?.photos.map((p) => p.path).sort(), ['a/1.jpg', 'a/copy-of-1.jpg']);
    const near = r.duplicates.find((g) => g.photos.some((p) => p.path === 'a/near-2.jpg'));
    assert.deepEqual(near?.photos.map((p) => p.path).sort(), ['a/2.jpg', 'a/near-2.jpg']);
    assert.equal(r.duplicates.length, 2, `only the planted duplicates: ${JSON.stringify(r.duplicates.map((g) => g.photos.map((p) => p.path)))}`);
    const leaked = r.leaks.pairs.map((p) => [p.a.path, p.b.path].sort().join(' '));
    assert.deepEqual(leaked.sort(), ['a/1.jpg a/copy-of-1.jpg', 'a/2.jpg a/near-2.jpg']);
    assert.equal(r.leaks.leakedTestPhotos, 1);
    // 19 test photos: one predicted wrong; the leaked copy is predicted right.
    assert.deepEqual(r.leaks.testAccuracy, { all: 18 / 19, withoutLeaked: 17 / 18, testPhotos: 19 });
    assert.equal(r.outliers[0]?.path, 'b/screenshot.jpg');
    assert.match(formatAudit(r), /likely label errors +\d+ flagged/);
  });

  it('a set with too few photos per class is refused, naming the classes', async () => {
    const { vectors, labels } = clusters(2, 3, 4, 1);
    const photos = labels.map((label, i) => ({ sha256: `s${i}`, path: `${i}.jpg`, label, split: 'train' as const }));
    const why = auditProblem(['cats', 'dogs'], photosPerClass(labels, 2), 5);
    assert.match(why!, /too small to audit: 2 classes have fewer than 5 photos with vectors \(cats \(3\), dogs \(3\)\)/);
    await assert.rejects(auditDataset({ dim: 4, classes: ['cats', 'dogs'], photos, vectors, options: {} }), /too small to audit/);
  });
});

describe('audit - fixes list', () => {
  it('round-trips through CSV, quoting commas and quotes', () => {
    const fixes = [
      { path: 'a/x, "odd".jpg', given: 'a', suggested: 'b', reason: 'label issue (margin -0.900)' },
      { path: 'a/y.jpg', given: 'a', suggested: '', reason: 'exact duplicate of a/z.jpg' },
    ];
    assert.deepEqual(parseFixes(formatFixes(fixes), 'f.csv'), fixes);
  });

  it('a file that is not a fixes list is refused, naming it and the line', () => {
    assert.throws(() => parseFixes('a,b\n', 'f.csv'), /f.csv: the first line must be "path,given,suggested,reason"/);
    assert.throws(() => parseFixes('path,given,suggested,reason\n,a,b,c\n', 'f.csv'), /f.csv:2: expected path,given,suggested,reason/);
  });

  it('lists label issues with their suggestion, later copies of a duplicate group and outliers, each once', () => {
    const ref = (path: string) => ({ path, sha256: path, label: 'a', split: 'train' as const });
    const fixes = fixesOf({
      labelIssues: [{ ...ref('x.jpg'), suggested: 'b', margin: -0.5, selfConfidence: 0.1, suggestedProbability: 0.6 }],
      duplicates: [{ kind: 'exact', similarity: 1, photos: [ref('y.jpg'), ref('x.jpg'), ref('z.jpg')], conflictingLabels: false }],
      outliers: [
        { ...ref('z.jpg'), distance: 0.9, z: 5 },
        { ...ref('w.jpg'), distance: 0.9, z: 4 },
      ],
    } as never);
    assert.deepEqual(
      fixes.map((f) => [f.path, f.suggested]),
      [
        ['x.jpg', 'b'],
        ['z.jpg', ''],
        ['w.jpg', ''],
      ],
    );
  });
});
