import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import * as tf from '@tensorflow/tfjs';
import { importRetrainGraph, loadClassifier, readModelFolder } from '@graft/head';
import { decodeImage, graphDefModel, initBackend, inspectModel, loadBackbone, parseBackbone, tensorflow, USER_MODEL_POLICY } from '@graft/vision';
import { RETRAIN_MOBILENET_INPUT, quantized, retrainInceptionGraph, retrainMobileNetGraph } from '../helpers/graphdef.js';

/* retrain.py's output graphs: recognised, quantized weights read exactly, imported as model folders, used as backbones. */

describe('retrain.py graphs', () => {
  let dir: string;
  before(async () => {
    await initBackend();
    dir = await mkdtemp(join(tmpdir(), 'graft-retrain-'));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  /** Runs a graph (converted by graft) from its input to one node on preprocessed input. */
  async function run(bytes: Uint8Array, node: string, x: tf.Tensor4D, inputNode?: string): Promise<Float32Array> {
    const files = graphDefModel(bytes, { origin: 'test', bottleneck: node, inputNode });
    const m = await tf.loadGraphModel(
      tf.io.fromMemory({
        modelTopology: files.json.modelTopology,
        weightSpecs: files.json.weightsManifest.flatMap((g) => g.weights) as tf.io.WeightsManifestEntry[],
        weightData: files.weightData,
      }),
    );
    const y = m.execute(x, node) as tf.Tensor;
    const out = (await y.data()) as Float32Array;
    y.dispose();
    m.dispose();
    return out;
  }

  it('dequantizes 8-bit weights exactly (MIN_COMBINED, MIN_FIRST; quint8 and qint8), as hand-computed', async () => {
    const DT_FLOAT = tensorflow.DataType.DT_FLOAT;
    for (const [mode, signed] of [
      ['MIN_COMBINED', false],
      ['MIN_FIRST', false],
      ['MIN_COMBINED', true],
    ] as const) {
      const q = quantized('w', [3], 5, mode, signed);
      // input + w, fed zeros: the dequantized weights themselves.
      const nodes = [
        {
          name: 'input',
          op: 'Placeholder',
          attr: { dtype: { type: DT_FLOAT }, shape: { shape: { dim: [{ size: -1 }, { size: 4 }, { size: 4 }, { size: 3 }] } } },
        },
        ...q.nodes,
        { name: 'out', op: 'Add', input: ['input', 'w'], attr: { T: { type: DT_FLOAT } } },
      ];
      const bytes = tensorflow.GraphDef.encode(tensorflow.GraphDef.fromObject({ node: nodes })).finish();
      const got = await run(bytes, 'out', tf.zeros([1, 4, 4, 3]) as tf.Tensor4D);
      for (let i = 0; i < 3; i++) assert.ok(Math.abs(got[i] - q.values[i]) < 1e-6, `${mode}${signed ? ' qint8' : ''}: ${got[i]} vs ${q.values[i]}`);
    }
    // The formula itself, on fixed numbers: min + (q - lowest) * (max - min) / 255.
    const q = quantized('w', [3], 5);
    assert.ok(q.values.every((v) => v >= -0.6 - 1e-6 && v <= 0.8 + 1e-6));
  });

  it('graft inspect shows the four parts: input, preprocessing (and where it comes from), bottleneck, head and its classes', async () => {
    const mobile = join(dir, 'mobile.pb');
    await writeFile(mobile, retrainMobileNetGraph({ groundTruth: true }).bytes);
    const r = await inspectModel(mobile, USER_MODEL_POLICY);
    assert.equal(r.input?.name, 'input', 'the float placeholder the base reads, not the ground truth one');
    assert.equal(r.input?.size, RETRAIN_MOBILENET_INPUT);
    assert.equal(r.input?.suggestedPreprocessing?.formula, '(x - 127.5) / 127.5');
    assert.match(r.input!.suggestedPreprocessing!.why, /retrain\.py's MobileNet convention/);
    assert.equal(r.bottleneckCandidates[0], 'MobilenetV1/Logits/SpatialSqueeze');
    assert.deepEqual(r.retrain, { output: 'final_result', classes: 3, dim: 10, bottleneck: 'MobilenetV1/Logits/SpatialSqueeze' });
    assert.equal(r.note, undefined, 'every shape computed (Dequantize included)');
    const byInput = await inspectModel(mobile, { ...USER_MODEL_POLICY, inputNode: 'input' });
    assert.equal(byInput.input?.name, 'input', '--input-node input finds it');
    const inception = join(dir, 'inception.pb');
    await writeFile(inception, retrainInceptionGraph().bytes);
    const i = await inspectModel(inception, USER_MODEL_POLICY);
    assert.equal(i.input?.decodingReplaced, true);
    assert.equal(i.input?.preprocessing, '(x - 128) * 0.0078125', 'the graph preprocesses itself');
    assert.equal(i.input?.suggestedPreprocessing, undefined);
    assert.deepEqual(i.retrain, { output: 'final_result', classes: 4, dim: 14, bottleneck: 'pool_3/_reshape' });
    assert.equal(i.bottleneckCandidates[0], 'pool_3/_reshape');
  });

  it('--backbone output_graph.pb cuts at the bottleneck retrain.py read (not final_result), exactly as the graph computes it', async () => {
    const g = retrainMobileNetGraph();
    const pb = join(dir, 'backbone.pb');
    await writeFile(pb, g.bytes);
    const b = await loadBackbone(parseBackbone(pb), USER_MODEL_POLICY);
    try {
      assert.equal(b.info.bottleneck, 'MobilenetV1/Logits/SpatialSqueeze');
      assert.equal(b.info.dim, 10, "the base's 10 values, not the head's 3 classes");
      assert.equal(b.info.preprocess, 'symmetric', "retrain.py's MobileNet convention when the graph has none");
      const px = Uint8Array.from({ length: 16 * 16 * 3 }, (_, i) => (i * 37) % 256);
      const [v] = await b.embed([px]);
      const ref = g.reference!(
        tf.tensor4d(
          Float32Array.from(px, (x) => x / 127.5 - 1),
          [1, 16, 16, 3],
        ),
      );
      const want = (await ref.data()) as Float32Array;
      ref.dispose();
      for (let i = 0; i < 10; i++) assert.ok(Math.abs(v[i] - want[i]) < 1e-4, `${i}: ${v[i]} vs ${want[i]} (hand-dequantized weights)`);
    } finally {
      b.dispose();
    }
    const unit = await loadBackbone(parseBackbone(pb, { preprocess: 'unit' }), USER_MODEL_POLICY);
    assert.equal(unit.info.preprocess, 'unit', '--preprocess overrides the convention');
    assert.notEqual(unit.info.fingerprint, (await loadBackbone(parseBackbone(pb), USER_MODEL_POLICY)).info.fingerprint, 'and is another cache key');
    unit.dispose();
  });

  it('graft import writes a model folder that classifies as the original graph, within 1e-4', async () => {
    for (const [name, g, classes] of [
      ['mobile', retrainMobileNetGraph(), ['licenseplate', 'rectangle', 'mirror']],
      ['inception', retrainInceptionGraph(), ['a', 'b', 'c', 'd']],
    ] as const) {
      const pb = join(dir, `${name}-output_graph.pb`);
      const labels = join(dir, `${name}-output_labels.txt`);
      await writeFile(pb, g.bytes);
      await writeFile(labels, `${classes.join('\n')}\n`);
      const out = join(dir, `${name}-model`);
      const r = await importRetrainGraph(pb, labels, out);
      assert.ok(r.maxDifference <= 1e-4, `${name}: ${r.maxDifference}`);
      const folder = await readModelFolder(out);
      assert.deepEqual(folder.card.classes, classes);
      assert.equal(folder.card.importedFrom?.kind, 'retrain.py');
      // A photo through graft classify against the whole original graph on the same pixels.
      const photo = await sharp({ create: { width: 40, height: 30, channels: 3, background: { r: 200, g: 40, b: 90 } } })
        .jpeg()
        .toBuffer();
      const c = await loadClassifier(out);
      try {
        const mine = await c.classify(photo, classes.length);
        const S = folder.card.backbone.inputSize;
        const pixels = await decodeImage(photo, S);
        const scale = folder.card.backbone.preprocess === 'symmetric' ? [1 / 127.5, -1] : [1, 0];
        const theirs = await run(
          g.bytes,
          'final_result',
          tf.tensor4d(
            Float32Array.from(pixels, (v) => v * scale[0] + scale[1]),
            [1, S, S, 3],
          ),
          folder.card.backbone.inputNode,
        );
        const best = theirs.indexOf(Math.max(...theirs));
        assert.equal(mine[0].label, classes[best], `${name}: same top-1`);
        for (const p of mine)
          assert.ok(
            Math.abs(p.probability - theirs[classes.indexOf(p.label as never)]) < 1e-4,
            `${name} ${p.label}: ${p.probability} vs ${theirs[classes.indexOf(p.label as never)]}`,
          );
      } finally {
        c.dispose();
      }
    }
  });

  it("refuses what it cannot honour: a label count that is not the head's, a graph without retrain.py's head, an op graft cannot run, 8-bit compute", async () => {
    const pb = join(dir, 'three.pb');
    await writeFile(pb, retrainMobileNetGraph().bytes);
    await writeFile(join(dir, 'five.txt'), 'a\nb\nc\nd\ne\n');
    await assert.rejects(importRetrainGraph(pb, join(dir, 'five.txt'), join(dir, 'x')), /the graph's head has 3 classes, .*five\.txt lists 5/);
    const { seedGraph } = await import('../helpers/graphdef.js');
    await writeFile(join(dir, 'plain.pb'), seedGraph().bytes);
    await assert.rejects(importRetrainGraph(join(dir, 'plain.pb'), join(dir, 'five.txt'), join(dir, 'y')), /is not a retrain\.py output graph/);
    await writeFile(join(dir, 'odd.pb'), retrainMobileNetGraph({ extraOp: 'FancyNewOp' }).bytes);
    await assert.rejects(
      loadBackbone(parseBackbone(join(dir, 'odd.pb'), { bottleneck: 'MobilenetV1/Logits/odd' }), USER_MODEL_POLICY),
      /node MobilenetV1\/Logits\/odd is a FancyNewOp, an op graft cannot run/,
    );
    await writeFile(join(dir, 'eight.pb'), retrainMobileNetGraph({ extraOp: 'QuantizeV2' }).bytes);
    await assert.rejects(
      loadBackbone(parseBackbone(join(dir, 'eight.pb'), { bottleneck: 'MobilenetV1/Logits/odd' }), USER_MODEL_POLICY),
      /is a QuantizeV2: graft runs graphs whose weights are quantized .* not graphs that compute in 8 bits/,
    );
    assert.equal((await readFile(pb)).length > 0, true);
  });
});
