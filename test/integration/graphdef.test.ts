import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { generateSampleSet } from '@graft/cli';
import { SEED_INPUT, retrainMobileNetGraph, seedGraph } from '../helpers/graphdef.js';
import { runGraft } from '../helpers/process.js';

describe('graphdef - training on a frozen TensorFlow graph', () => {
  it('graft train --backbone model.pb trains end to end on a local cluster, and classify reloads that graph', { timeout: 300_000 }, async () => {
    const work = await mkdtemp(join(tmpdir(), 'graft-pb-train-'));
    try {
      const pb = join(work, 'seed_graph.pb');
      await writeFile(pb, seedGraph().bytes);
      const data = await generateSampleSet(join(work, 'shapes'), 10, 51, ['circle', 'square']);
      const out = join(work, 'model');
      const env = { GRAFT_HOME: work, GRAFT_CACHE_DIR: join(work, 'cache') };
      const inspect = await runGraft(['inspect', pb], env);
      assert.equal(inspect.code, 0, inspect.output);
      assert.match(inspect.output, /pool_3\s+AvgPool\s+\[1, 1, 1, 14\]\s+<- bottleneck candidate/);
      const train = await runGraft(['train', data, '--backbone', pb, '--workers', '2', '--epochs', '5', '--out', out, '--data', join(work, 'cluster')], env);
      assert.equal(train.code, 0, train.output.slice(-4000));
      const meta = JSON.parse(await readFile(join(out, 'graft.json'), 'utf8')) as {
        backbone: { url: string; bottleneck: string; inputSize: number; preprocess: string; dim: number; inputNode: string; sourceSha256: string };
      };
      assert.equal(
        meta.backbone.sourceSha256,
        createHash('sha256')
          .update(await readFile(pb))
          .digest('hex'),
        'the model records the .pb it was trained on',
      );
      assert.equal(meta.backbone.inputNode, 'ResizeBilinear');
      assert.equal(meta.backbone.url, `file://${pb}`);
      assert.equal(meta.backbone.bottleneck, 'pool_3');
      assert.equal(meta.backbone.inputSize, SEED_INPUT);
      assert.equal(meta.backbone.preprocess, 'none');
      assert.equal(meta.backbone.dim, 14);
      const photo = join(data, 'circle', (await readdir(join(data, 'circle')))[0]);
      const cls = await runGraft(['classify', out, photo, '--json'], env);
      assert.equal(cls.code, 0, cls.output);
      const [answer] = JSON.parse(cls.output.trim().split('\n').pop()!) as { predictions: { label: string; probability: number }[] }[];
      assert.deepEqual(answer.predictions.map((p) => p.label).sort(), ['circle', 'square'], cls.output);
      assert.ok(Math.abs(answer.predictions.reduce((a, p) => a + p.probability, 0) - 1) < 1e-4, 'probabilities from the reloaded graph');
      // retrain.py's way out: output_graph.pb and output_labels.txt, read back by graft import as any retrain.py graph.
      assert.match(train.output, /retrain\.py's way out: .*output_graph\.pb and output_labels\.txt \(final_result, within/);
      assert.equal(await readFile(join(out, 'output_labels.txt'), 'utf8'), 'circle\nsquare\n');
      const back = join(work, 'reimported');
      const imp = await runGraft(['import', join(out, 'output_graph.pb'), '--labels', join(out, 'output_labels.txt'), '--out', back, '--no-bundle'], env);
      assert.equal(imp.code, 0, imp.output);
      assert.match(imp.output, /checked against the original graph on \d+ pictures: probabilities within/);
      const [again] = JSON.parse((await runGraft(['classify', back, photo, '--json'], env)).output.trim().split('\n').pop()!) as {
        predictions: { label: string; probability: number }[];
      }[];
      for (const p of answer.predictions) {
        const q = again.predictions.find((x) => x.label === p.label)!;
        assert.ok(Math.abs(q.probability - p.probability) < 1e-4, `${p.label}: ${q.probability} from the round trip, ${p.probability} from the folder`);
      }
      // model.onnx too, the same answer from it.
      const [viaOnnx] = JSON.parse((await runGraft(['classify', out, photo, '--json', '--runtime', 'onnx'], env)).output.trim().split('\n').pop()!) as {
        predictions: { label: string; probability: number }[];
      }[];
      assert.deepEqual(
        viaOnnx.predictions.map((p) => p.label),
        answer.predictions.map((p) => p.label),
      );
      // Another graph at the same path is refused, even one whose pruned weights are the same.
      await writeFile(pb, seedGraph({ extraOp: 'Identity' }).bytes);
      const changed = await runGraft(['classify', out, photo], env);
      assert.equal(changed.code, 1, changed.output);
      assert.match(changed.output, /not the [0-9a-f]{64} this backbone was resolved from: refusing it/);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });

  it('coming from retrain.py: graft inspect, graft import, graft classify and --backbone output_graph.pb on its base', { timeout: 300_000 }, async () => {
    const work = await mkdtemp(join(tmpdir(), 'graft-retrain-'));
    try {
      const pb = join(work, 'output_graph.pb');
      const labels = join(work, 'output_labels.txt');
      await writeFile(pb, retrainMobileNetGraph().bytes);
      await writeFile(labels, 'licenseplate\nrectangle\nmirror\n');
      const env = { GRAFT_HOME: work, GRAFT_CACHE_DIR: join(work, 'cache') };
      const inspect = await runGraft(['inspect', pb], env);
      assert.equal(inspect.code, 0, inspect.output);
      assert.match(inspect.output, /input: input, 16x16 RGB/);
      assert.match(inspect.output, /preprocessing: \(x - 127\.5\) \/ 127\.5 \(retrain\.py's MobileNet convention/);
      assert.match(inspect.output, /retrain\.py head: final_result over 3 classes, reading 10-d MobilenetV1\/Logits\/SpatialSqueeze/);
      const out = join(work, 'imported');
      const imp = await runGraft(['import', pb, '--labels', labels, '--out', out], env);
      assert.equal(imp.code, 0, imp.output);
      assert.match(imp.output, /checked against the original graph on 4 pictures: probabilities within/);
      assert.match(imp.output, /browser bundle: /);
      const data = await generateSampleSet(join(work, 'shapes'), 10, 52, ['circle', 'square']);
      const photo = join(data, 'circle', (await readdir(join(data, 'circle')))[0]);
      const cls = await runGraft(['classify', out, photo, '--json'], env);
      assert.equal(cls.code, 0, cls.output);
      const [answer] = JSON.parse(cls.output.trim().split('\n').pop()!) as { predictions: { label: string }[] }[];
      assert.ok(
        answer.predictions.every((p) => ['licenseplate', 'rectangle', 'mirror'].includes(p.label)),
        cls.output,
      );
      // Its base, retrained on new classes through the cluster.
      const model = join(work, 'model');
      const train = await runGraft(
        ['train', data, '--backbone', pb, '--workers', '2', '--epochs', '5', '--out', model, '--data', join(work, 'cluster'), '--no-bundle'],
        env,
      );
      assert.equal(train.code, 0, train.output.slice(-4000));
      const meta = JSON.parse(await readFile(join(model, 'graft.json'), 'utf8')) as {
        classes: string[];
        backbone: { bottleneck: string; dim: number; preprocess: string; sourceSha256: string };
      };
      assert.deepEqual(meta.classes, ['circle', 'square']);
      assert.equal(meta.backbone.bottleneck, 'MobilenetV1/Logits/SpatialSqueeze');
      assert.equal(meta.backbone.dim, 10);
      assert.equal(meta.backbone.preprocess, 'symmetric');
      assert.equal(
        meta.backbone.sourceSha256,
        createHash('sha256')
          .update(await readFile(pb))
          .digest('hex'),
        'the vector cache keys it by the graph',
      );
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
});
