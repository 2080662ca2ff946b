import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import * as tf from '@tensorflow/tfjs';
import {
  evaluatePredictions,
  loadClassifier,
  misclassifiedOf,
  modelFiles,
  packageModel,
  trainHead,
  writeModelFolder,
  type AuditReport,
  type EvaluationReport,
  type ModelCard,
} from '@graft/head';
import { decodeImage, fetchBackbone, initBackend, loadBackbone, parseBackbone, USER_MODEL_POLICY } from '@graft/vision';
import { confusedPairs, renderReport, serveModelFolder, thumbnailDataUrl, thumbnailsWanted, writeWebBundle } from '@graft/web';
import { ROOT } from '../helpers/fixtures.js';
import { seedGraph } from '../helpers/graphdef.js';
import { writeConvModel } from '../helpers/models.js';

/** A photo-like test picture: gradients, a disc of colour, some noise. */
async function photo(seed: number, w = 120, h = 90): Promise<Uint8Array> {
  const px = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const inDisc = (x - w / 2) ** 2 + (y - h / 2) ** 2 < (h / (2 + (seed % 3))) ** 2;
      px[(y * w + x) * 3] = inDisc ? (seed * 70) % 256 : (x * 2) % 256;
      px[(y * w + x) * 3 + 1] = inDisc ? (seed * 130) % 256 : (y * 3) % 256;
      px[(y * w + x) * 3 + 2] = ((x + y + seed * 17) * 5) % 256;
    }
  return new Uint8Array(
    await sharp(px, { raw: { width: w, height: h, channels: 3 } })
      .jpeg({ quality: 90 })
      .toBuffer(),
  );
}

/** Trains a small head on a backbone and writes a model folder; returns it and the photos it used. */
async function modelFolder(
  dir: string,
  backboneUrl: string,
  opts: { inputSize?: number; preprocess?: 'unit' | 'symmetric' | 'none'; hiddenUnits?: number } = {},
) {
  const backbone = await loadBackbone(parseBackbone(backboneUrl, { inputSize: opts.inputSize, preprocess: opts.preprocess }), USER_MODEL_POLICY);
  const classes = ['disc', 'other', 'third'];
  const photos = await Promise.all(Array.from({ length: 12 }, (_, i) => photo(i)));
  const vectors = await backbone.embed(await Promise.all(photos.map((p) => decodeImage(p, backbone.info.inputSize))));
  const y = photos.map((_, i) => i % 3);
  const head = await trainHead(
    { dim: backbone.info.dim, classes, train: { x: vectors, y }, validation: { x: vectors, y } },
    { epochs: 15, patience: 0, hiddenUnits: opts.hiddenUnits },
  );
  const folder = await packageModel(head, backbone.info, evaluatePredictions([], [], classes), 'jtest');
  backbone.dispose();
  await writeModelFolder(dir, modelFiles(folder));
  return { folder, photos };
}

describe('browser bundle', () => {
  let dir: string;
  before(async () => {
    await initBackend({ preferred: 'cpu' });
    dir = await mkdtemp(join(tmpdir(), 'graft-web-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  // The bundle is read back from its files and compared with graft classify's own path
  // (sharp decoding, the backbone as workers run it, then the head), photo by photo.
  async function checkBundle(modelDir: string, photos: Uint8Array[]) {
    const folder = JSON.parse(await readFile(join(modelDir, 'graft.json'), 'utf8')) as ModelCard;
    const classifier = await loadClassifier(modelDir);
    const json = JSON.parse(await readFile(join(modelDir, 'web', 'model.json'), 'utf8'));
    const weights = await readFile(join(modelDir, 'web', 'weights.bin'));
    const artifacts = {
      modelTopology: json.modelTopology,
      weightSpecs: json.weightsManifest.flatMap((g: { weights: unknown[] }) => g.weights),
      weightData: weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.byteLength),
    };
    const model = json.format === 'graph-model' ? await tf.loadGraphModel(tf.io.fromMemory(artifacts)) : await tf.loadLayersModel(tf.io.fromMemory(artifacts));
    const size = folder.backbone.inputSize;
    let max = 0;
    for (const p of photos) {
      const expected = await classifier.classify(p, folder.classes.length);
      const x = tf.tensor4d(Float32Array.from(await decodeImage(p, size)), [1, size, size, 3]);
      const y = model.predict(x) as tf.Tensor;
      const got = (await y.data()) as Float32Array;
      tf.dispose([x, y]);
      const top = Array.from(got.keys()).sort((a, b) => got[b] - got[a])[0];
      assert.equal(folder.classes[top], expected[0].label, 'same top-1 as graft classify');
      for (const e of expected) max = Math.max(max, Math.abs(got[folder.classes.indexOf(e.label)] - e.probability));
    }
    classifier.dispose();
    model.dispose();
    assert.ok(max < 1e-3, `probabilities within 1e-3 of graft classify (max difference ${max})`);
    const labels = JSON.parse(await readFile(join(modelDir, 'web', 'labels.json'), 'utf8'));
    assert.deepEqual(labels, folder.classes);
    const config = JSON.parse(await readFile(join(modelDir, 'web', 'graft-web.json'), 'utf8'));
    assert.equal(config.inputSize, size);
    assert.equal(config.format, json.format);
    for (const f of ['index.html', 'try-it.js', 'tf.min.js', 'model.js', 'NOTICE'])
      assert.ok((await readFile(join(modelDir, 'web', f))).length > 0, `web/${f} written`);
    assert.match(
      await readFile(join(modelDir, 'web', 'tf.min.js'), 'utf8').then((s) => s.slice(0, 400)),
      /Apache License/,
      'TF.js copied from node_modules with its licence',
    );
  }

  it('a layers backbone and its head become one layers model that agrees with graft classify', async () => {
    const models = join(dir, 'conv');
    await mkdir(models, { recursive: true });
    const url = await writeConvModel(models, { size: 32, filters: 8, layers: 2 });
    const modelDir = join(dir, 'layers-model');
    const { folder, photos } = await modelFolder(modelDir, url, { preprocess: 'symmetric' });
    const bundle = await writeWebBundle(join(modelDir, 'web'), folder, (await fetchBackbone(folder.card.backbone, USER_MODEL_POLICY)).files);
    assert.equal(bundle.format, 'layers-model');
    assert.ok(bundle.embedded);
    await checkBundle(modelDir, photos);
  });

  it('a frozen-graph backbone gets preprocessing and head written into its graph, pruned, and agrees with graft classify', async () => {
    const pb = join(dir, 'seed.pb');
    await writeFile(pb, seedGraph().bytes);
    const modelDir = join(dir, 'graph-model');
    const { folder, photos } = await modelFolder(modelDir, pb);
    const bundle = await writeWebBundle(join(modelDir, 'web'), folder, (await fetchBackbone(folder.card.backbone, USER_MODEL_POLICY)).files);
    assert.equal(bundle.format, 'graph-model');
    const json = JSON.parse(await readFile(join(modelDir, 'web', 'model.json'), 'utf8'));
    const names = json.modelTopology.node.map((n: { name: string }) => n.name);
    assert.ok(names.includes('graft/image') && names.includes('graft/probabilities'));
    assert.ok(!json.modelTopology.node.some((n: { op: string; name: string }) => n.op === 'Placeholder' && n.name !== 'graft/image'), 'one input: the image');
    await checkBundle(modelDir, photos);
  });

  it('a head with a hidden layer (a sweep winner) is bundled too, on either kind of backbone', async () => {
    const pb = join(dir, 'seed.pb');
    const graphDir = join(dir, 'graph-hidden');
    const g = await modelFolder(graphDir, pb, { hiddenUnits: 8 });
    assert.equal(g.folder.card.training.hiddenUnits, 8);
    await writeWebBundle(join(graphDir, 'web'), g.folder, (await fetchBackbone(g.folder.card.backbone, USER_MODEL_POLICY)).files);
    await checkBundle(graphDir, g.photos);
    const layersDir = join(dir, 'layers-hidden');
    const l = await modelFolder(layersDir, `file://${join(dir, 'conv', 'model.json')}`, { preprocess: 'symmetric', hiddenUnits: 8 });
    await writeWebBundle(join(layersDir, 'web'), l.folder, (await fetchBackbone(l.folder.card.backbone, USER_MODEL_POLICY)).files);
    await checkBundle(layersDir, l.photos);
  });
});

describe('report.html', () => {
  const classes = ['cat', 'dog', '<b>fox</b>'];
  // 0: 3 right, 1 taken for dog; 1: 2 right, 2 taken for cat; 2: 1 right.
  const probs = [
    [0.9, 0.05, 0.05],
    [0.8, 0.1, 0.1],
    [0.7, 0.2, 0.1],
    [0.3, 0.58, 0.12],
    [0.1, 0.8, 0.1],
    [0.2, 0.7, 0.1],
    [0.6, 0.3, 0.1],
    [0.55, 0.4, 0.05],
    [0.1, 0.1, 0.8],
  ].map((p) => Float32Array.from(p));
  const labels = [0, 0, 0, 0, 1, 1, 1, 1, 2];
  const images = labels.map((_, i) => ({ sha256: `sha${i}`, path: `photos/${i}.jpg` }));
  const report: EvaluationReport = {
    ...evaluatePredictions(probs, labels, classes, [0, 0, 1, 1, 2]),
    splits: { train: 5, validation: 2, test: 9 },
    history: [1, 2, 3].map((e) => ({ epoch: e, epochs: 3, loss: 1 / e, accuracy: 0.5 + e / 10, valLoss: 1.2 / e, valAccuracy: 0.4 + e / 10 })),
    misclassified: misclassifiedOf(probs, labels, classes, images),
  };
  const card = {
    formatVersion: 1,
    classes,
    backbone: { id: 'custom', url: 'file:///m/model.json', bottleneck: '', inputSize: 32, preprocess: 'unit', fingerprint: 'f00', dim: 8, format: 'layers' },
    input: { dim: 8, standardizationFolded: true },
    training: { optimizer: 'rmsprop', learningRate: 0.001, batchSize: 3, epochs: 3, bestEpoch: 3, stoppedEarly: false },
    jobId: 'j1',
    createdAt: '2026-11-29T00:00:00Z',
  } as ModelCard;

  it('runs only its own script: the CSP names it by hash, no unsafe-inline script; the try-it page runs only its files', async () => {
    const html = renderReport({ report, card });
    const csp = /Content-Security-Policy" content="([^"]+)"/.exec(html)![1];
    const script = /<script>([\s\S]*?)<\/script>/.exec(html)![1];
    const hash = createHash('sha256').update(script).digest('base64');
    assert.ok(csp.includes(`script-src 'sha256-${hash}'`), csp);
    assert.doesNotMatch(/script-src[^;]*/.exec(csp)![0], /unsafe-inline/);
    const page = await readFile(join(ROOT, 'packages/web/assets/index.html'), 'utf8');
    assert.match(page, /Content-Security-Policy" content="default-src 'none'; script-src 'self';/);
    assert.doesNotMatch(page, /<script>/, 'no inline script on the try-it page');
  });

  it('lists wrong test images most confident first and the most confused pairs first', () => {
    assert.deepEqual(
      report.misclassified!.map((m) => [m.path, m.actual, m.predicted]),
      [
        ['photos/6.jpg', 'dog', 'cat'],
        ['photos/3.jpg', 'cat', 'dog'],
        ['photos/7.jpg', 'dog', 'cat'],
      ],
    );
    const pairs = confusedPairs(report);
    assert.deepEqual(
      pairs.map((p) => [p.actual, p.predicted, p.count]),
      [
        ['dog', 'cat', 2],
        ['cat', 'dog', 1],
      ],
    );
    assert.deepEqual(
      pairs[0].images.map((i) => i.sha256),
      ['sha6', 'sha7'],
    );
    assert.deepEqual(thumbnailsWanted(report).sort(), ['sha3', 'sha6', 'sha7']);
  });

  it('is one self-contained file: figures, escaped names, thumbnails inlined, nothing fetched', async () => {
    const thumb = await thumbnailDataUrl(await photo(1));
    assert.match(thumb!, /^data:image\/jpeg;base64,/);
    const html = renderReport({ report, card, thumbnails: new Map([['sha6', thumb!]]) });
    assert.ok(!html.includes('<b>fox</b>'), 'class names are escaped');
    assert.ok(html.includes('&lt;b&gt;fox&lt;/b&gt;'));
    assert.equal((html.match(/class="class-row"/g) ?? []).length, 3, 'a bar per class');
    assert.equal((html.match(/class="series"/g) ?? []).length, 4, 'loss and accuracy, train and validation');
    assert.equal((html.match(/<img src="data:image\/jpeg;base64,/g) ?? []).length, 1, 'the thumbnail it had');
    assert.ok(html.includes('photos/7.jpg'), 'a photo without a thumbnail is named');
    assert.ok(!/(src|href)="(https?:)?\/\//.test(html), 'no network reference');
    const data = JSON.parse(/<script type="application\/json" id="graft-data">(.*?)<\/script>/s.exec(html)![1]);
    assert.deepEqual(data.confusion, report.confusion);
    assert.ok(html.includes('77.8%') || html.includes('66.7%'), 'top-1 shown');
    assert.equal(await thumbnailDataUrl(new Uint8Array([1, 2, 3])), undefined, 'an unreadable image gives no thumbnail');
  });

  it('shows an audit: its findings with thumbnails, escaped; every confused pair is reachable from its matrix cell', () => {
    const ref = (path: string, sha: string) => ({ path, sha256: sha, label: 'cat', split: 'train' as const });
    const audit = {
      formatVersion: 1,
      photos: 9,
      classes,
      method: 'confident learning',
      estimatedErrors: 1,
      errorEstimates: { mixture: 1, confidentJoint: 1, calibratedJoint: 2 },
      outOfSampleAccuracy: 0.8,
      seconds: 1.5,
      foldsRestored: 0,
      options: { folds: 5, duplicateThreshold: 0.8, outlierNeighbours: 5, outlierZ: 3.5 },
      labelIssues: [{ ...ref('photos/<odd>.jpg', 'shaL'), suggested: 'dog', margin: -0.7, selfConfidence: 0.1, suggestedProbability: 0.8 }],
      duplicates: [{ kind: 'exact', similarity: 1, photos: [ref('a.jpg', 'shaD'), ref('b.jpg', 'shaD')], conflictingLabels: false }],
      leaks: {
        pairs: [{ kind: 'near', similarity: 0.9, a: ref('c.jpg', 'shaC'), b: { ...ref('d.jpg', 'shaE'), split: 'test' as const } }],
        leakedTestPhotos: 1,
        testAccuracy: { all: 0.75, withoutLeaked: 0.7, testPhotos: 9 },
      },
      outliers: [{ ...ref('e.jpg', 'shaO'), distance: 0.9, z: 6 }],
    } as AuditReport;
    assert.deepEqual(
      thumbnailsWanted(report, audit)
        .filter((s) => s.startsWith('shaL') || s.startsWith('shaD') || s.startsWith('shaO'))
        .sort(),
      ['shaD', 'shaL', 'shaO'],
    );
    const html = renderReport({ report, card, audit });
    assert.match(html, /<section id="audit">/);
    assert.match(html, /Likely label errors: 1/);
    assert.match(html, /Duplicates: 1 groups/);
    assert.match(html, /Split leaks: 1 pairs/);
    assert.match(html, /75\.0%[^<]*70\.0% without the 1 leaked/);
    assert.ok(html.includes('photos/&lt;odd&gt;.jpg') && !html.includes('<odd>'), 'paths are escaped');
    assert.equal(
      (html.match(/class="pair( hidden)?" data-actual=/g) ?? []).length,
      confusedPairs(report, Infinity).length,
      'a block per confused pair, for the matrix to open',
    );
    assert.doesNotMatch(renderReport({ report, card }), /id="audit"/, 'no audit, no section');
  });

  it('says so when a report has no training history', () => {
    const { history: _h, ...old } = report;
    assert.match(renderReport({ report: old, card }), /no training history/);
  });
});

describe('graft serve', () => {
  it('serves the model folder read-only: the page, its files, nothing outside', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'graft-serve-'));
    await mkdir(join(dir, 'm', 'web'), { recursive: true });
    await writeFile(join(dir, 'm', 'web', 'index.html'), '<p>hi</p>');
    await writeFile(join(dir, 'secret.txt'), 'secret');
    const s = await serveModelFolder(join(dir, 'm'), { port: 0 });
    try {
      const base = new URL(s.url).origin;
      const home = await fetch(`${base}/`, { redirect: 'manual' });
      assert.equal(home.status, 302);
      assert.equal(home.headers.get('location'), '/web/index.html');
      const page = await fetch(`${base}/web/index.html`);
      assert.equal(page.headers.get('content-type'), 'text/html; charset=utf-8');
      assert.equal(await page.text(), '<p>hi</p>');
      for (const p of ['/../secret.txt', '/%2e%2e/secret.txt', '/web/..%2f..%2fsecret.txt']) {
        const r = await fetch(`${base}${p}`);
        assert.ok(r.status === 403 || r.status === 404, `${p} refused (${r.status})`);
        assert.notEqual(await r.text(), 'secret');
      }
      assert.equal((await fetch(`${base}/web/index.html`, { method: 'POST' })).status, 405);
      assert.match(s.url, /^http:\/\/127\.0\.0\.1:\d+\/web\/index\.html$/);
    } finally {
      await s.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
