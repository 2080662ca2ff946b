import assert from 'node:assert/strict';
import { appendFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ManifestEntries, ManifestError, validateManifest } from '@graft/coordinator';
import { UncertainPool, applyDenseHead, coverageCurve, decodeDenseHead, encodeDenseHead, kCenterGreedy, topClasses } from '@graft/head';
import { CSV_HEADER, PredictionFile, readImageList } from '@graft/cli';
import { codecs, type Prediction } from '@graft/protocol/testing';

/*
 * graft predict's pure parts: the head on the wire and applied without TF.js, the choice of photos
 * to label, the answers file (resumed without a row twice), and what a prediction manifest may be.
 */

const layer = (inputs: number, units: number, activation: 'relu' | 'softmax', seed: number) => ({
  inputs,
  units,
  activation,
  kernel: Float32Array.from({ length: inputs * units }, (_, i) => Math.sin(seed + i) / 2),
  bias: Float32Array.from({ length: units }, (_, i) => Math.cos(seed + i) / 4),
});

describe('predict - the head as dense layers', () => {
  it('round-trips through PredictHead and computes relu then softmax as written out by hand', () => {
    const layers = [layer(4, 3, 'relu', 1), layer(3, 2, 'softmax', 2)];
    const back = decodeDenseHead(encodeDenseHead(layers), 4, 2);
    assert.deepEqual(
      back.map((l) => [l.inputs, l.units, l.activation, [...l.kernel], [...l.bias]]),
      layers.map((l) => [l.inputs, l.units, l.activation, [...l.kernel], [...l.bias]]),
    );
    const x = Float32Array.from([0.5, -1, 2, 0.25]);
    const hidden = [0, 1, 2].map((c) => Math.max(0, layers[0].bias[c] + [0, 1, 2, 3].reduce((s, j) => s + x[j] * layers[0].kernel[j * 3 + c], 0)));
    const logits = [0, 1].map((c) => layers[1].bias[c] + [0, 1, 2].reduce((s, j) => s + hidden[j] * layers[1].kernel[j * 2 + c], 0));
    const z = logits.map((l) => Math.exp(l - Math.max(...logits)));
    const want = z.map((e) => e / (z[0] + z[1]));
    const got = applyDenseHead(back, x);
    for (let c = 0; c < 2; c++) assert.ok(Math.abs(got[c] - want[c]) < 1e-6, `${got[c]} vs ${want[c]}`);
  });

  it("refuses a head that does not fit the job: the backbone's dimension, the classes, its activations, its bytes", () => {
    const ok = [layer(4, 3, 'softmax', 1)];
    assert.throws(() => decodeDenseHead(encodeDenseHead(ok), 5, 3), /takes 4 inputs, not 5/);
    assert.throws(() => decodeDenseHead(encodeDenseHead(ok), 4, 2), /answers 3 classes, the job names 2/);
    assert.throws(() => decodeDenseHead(encodeDenseHead([layer(4, 3, 'relu', 1)]), 4, 3), /activation "relu", not softmax/);
    assert.throws(() => decodeDenseHead(encodeDenseHead([layer(4, 4, 'relu', 1), layer(4, 4, 'relu', 2), layer(4, 3, 'softmax', 3)]), 4, 3), /3 layers/);
    const short = codecs.predictHead.encode({ layers: [{ inputs: 4, units: 3, activation: 'softmax', kernel: new Uint8Array(8), bias: new Uint8Array(12) }] });
    assert.throws(() => decodeDenseHead(short, 4, 3), /do not fit 4 x 3/);
    const huge = codecs.predictHead.encode({
      layers: [{ inputs: 4096, units: 5000, activation: 'softmax', kernel: new Uint8Array(0), bias: new Uint8Array(0) }],
    });
    assert.throws(() => decodeDenseHead(huge, 4096, 5000), /over \d+ weights/);
    assert.throws(() => decodeDenseHead(Uint8Array.from([0xff, 0xff, 0xff]), 4, 3), /not a valid PredictHead/);
  });

  it('top classes: most probable first, and the margin between the first two', () => {
    const t = topClasses(Float32Array.from([0.1, 0.6, 0.3]), 2);
    assert.deepEqual(t.classes, [1, 2]);
    assert.ok(Math.abs(t.margin - 0.3) < 1e-6);
    assert.deepEqual(topClasses(Float32Array.from([0.1, 0.6, 0.3]), 1).classes, [1]);
  });
});

describe('predict - choosing --min-confidence', () => {
  it('the coverage curve: at each threshold, the share of test photos answered and their accuracy', () => {
    const p = (a: number) => Float32Array.from([a, 1 - a]);
    // Confident and right, confident and right, unsure and wrong, unsure and right.
    const curve = coverageCurve([p(0.95), p(0.85), p(0.55), p(0.52)], [0, 0, 1, 0]);
    const at = (t: number) => curve.find((c) => c.threshold === t)!;
    assert.deepEqual(at(0), { threshold: 0, answered: 1, accuracy: 0.75 });
    assert.deepEqual(at(0.8), { threshold: 0.8, answered: 0.5, accuracy: 1 });
    assert.deepEqual(at(0.99), { threshold: 0.99, answered: 0, accuracy: 0 });
  });
});

describe('predict - the photos to label next', () => {
  it('the pool keeps the smallest margins of a stream, however long', () => {
    const pool = new UncertainPool<{ index: number; margin: number }>(5);
    for (let i = 0; i < 1000; i++) pool.add({ index: i, margin: ((i * 7919) % 1000) / 1000 });
    assert.deepEqual(
      pool.sorted().map((c) => c.margin),
      [0, 0.001, 0.002, 0.003, 0.004],
    );
    assert.equal(pool.seen, 1000);
  });

  it('k-center greedy spreads its picks: one from each of three far-apart clusters before a second from any', () => {
    const around = (centre: number[], k: number) => Float32Array.from(centre.map((c, d) => c + 0.01 * Math.sin(k * 3 + d)));
    const vectors = [
      ...Array.from({ length: 10 }, (_, k) => around([1, 0, 0], k)),
      ...Array.from({ length: 10 }, (_, k) => around([0, 1, 0], k)),
      ...Array.from({ length: 10 }, (_, k) => around([0, 0, 1], k)),
    ];
    const picked = kCenterGreedy(vectors, 3);
    assert.equal(picked[0], 0, 'the first is the most uncertain (the pool is sorted so)');
    assert.deepEqual(new Set(picked.map((i) => Math.floor(i / 10))), new Set([0, 1, 2]));
    assert.equal(new Set(kCenterGreedy(vectors, 30)).size, 30, 'never the same photo twice');
  });
});

describe('predict - the answers file', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'graft-predictions-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const run = { model: 'm1', source: '/photos', top: 2, minConfidence: 0.6 };
  const row = (index: number, p: number, error = ''): Prediction => ({
    index,
    path: `p,${index}.jpg`,
    classes: error ? [] : [0, 1],
    probabilities: error ? [] : [p, 1 - p],
    margin: error ? 0 : 2 * p - 1,
    error,
  });

  it('writes CSV rows (quoted where needed), "unknown" below the threshold, and resumes after a cut row without repeating one', async () => {
    const out = join(dir, 'preds.csv');
    const f = await PredictionFile.open(out, ['cat', 'dog'], run);
    await f.write([row(0, 0.9), row(1, 0.55), row(2, 0, 'cannot decode')]);
    await f.close();
    await appendFile(out, '"p,3.jpg",cat,0.9'); // killed mid-row
    const again = await PredictionFile.open(out, ['cat', 'dog'], run);
    assert.equal(again.resumedRows, 3);
    await again.write([row(3, 0.8)]);
    await again.finish();
    const lines = (await readFile(out, 'utf8')).trimEnd().split('\n');
    assert.deepEqual(lines, [
      CSV_HEADER,
      '"p,0.jpg",cat,0.9,cat:0.9;dog:0.1,m1,',
      '"p,1.jpg",unknown,0.55,cat:0.55;dog:0.45,m1,',
      '"p,2.jpg",,,,m1,cannot decode',
      '"p,3.jpg",cat,0.8,cat:0.8;dog:0.2,m1,',
    ]);
    await assert.rejects(PredictionFile.open(out, ['cat', 'dog'], run), /exists \(a finished run's answers\)/);
  });

  it('JSONL rows; an unfinished file of another run is not appended to', async () => {
    const out = join(dir, 'preds.jsonl');
    const f = await PredictionFile.open(out, ['cat', 'dog'], run);
    await f.write([row(0, 0.9)]);
    await f.close();
    assert.deepEqual(JSON.parse((await readFile(out, 'utf8')).trim()), {
      path: 'p,0.jpg',
      prediction: 'cat',
      probability: 0.9,
      top: [
        { label: 'cat', probability: 0.9 },
        { label: 'dog', probability: 0.1 },
      ],
      model: 'm1',
    });
    await assert.rejects(PredictionFile.open(out, ['cat', 'dog'], { ...run, model: 'm2' }), /unfinished run of another model/);
    await assert.rejects(PredictionFile.open(join(dir, 'x.txt'), ['cat'], run), /name a \.csv or \.jsonl file/);
  });
});

describe('predict - lists and manifests without labels', () => {
  it('a list of photos needs no label column when the photos are to be classified', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'graft-unlabelled-'));
    try {
      await writeFile(join(dir, 'a.jpg'), Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 0x10, 0x4a, 0x46, 0x49, 0x46, 0, 1, 1, 0, 0, 1]));
      const text = 'path\na.jpg\nhttps://example.com/b.jpg\n';
      const labelled = await readImageList(join(dir, 'list.csv'), text);
      assert.match(labelled.problems.join('\n'), /no label column/);
      const plain = await readImageList(join(dir, 'list.csv'), text, { unlabelled: true });
      assert.deepEqual(plain.problems, []);
      assert.deepEqual(
        plain.images.map((i) => [i.location, i.label]),
        [
          ['a.jpg', ''],
          ['https://example.com/b.jpg', ''],
        ],
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  const sha = (c: string) => c.repeat(64);
  const manifest = (predict: Record<string, unknown> | undefined, label = '') =>
    codecs.manifest.create({
      jobId: 'job1',
      name: 'x',
      classes: ['a', 'b'],
      images: [{ sha256: sha('a'), label, path: 'x/1.jpg' }],
      backbone: { id: 'auto' },
      predict,
    });
  const check = (m: ReturnType<typeof manifest>) => validateManifest(m, ManifestEntries.of(m));

  it('a prediction manifest: unlabelled photos, the head by its hash, top-k and suggestions in range, nothing to train', () => {
    check(manifest({ headSha256: sha('c'), topK: 3, suggest: 10, model: 'm' }));
    assert.throws(
      () => check(manifest(undefined)),
      (e: Error) => e instanceof ManifestError && /unknown class ""/.test(e.message),
    );
    assert.throws(() => check(manifest({ headSha256: 'nope', topK: 3 })), /head "nope" is not a SHA-256/);
    assert.throws(() => check(manifest({ headSha256: sha('c'), topK: 0 })), /top-k must be 1 to 20/);
    assert.throws(() => check(manifest({ headSha256: sha('c'), topK: 3, suggest: 100_000 })), /at most 1000 suggestions/);
    const m = manifest({ headSha256: sha('c'), topK: 3 });
    m.training = { sweep: true };
    assert.throws(() => check(m), /trains nothing/);
  });
});
