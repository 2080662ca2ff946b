import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ONNX_TOLERANCE, evaluatePredictions, onnxExport, packageModel, trainHead, type VectorRow } from '@graft/head';
import { encodeHalf } from '@graft/protocol/testing';
import { PIXELS, PROBABILITIES, USER_MODEL_POLICY, fetchBackbone, initBackend, loadBackbone, onnx, parseBackbone, probePixels } from '@graft/vision';
import { onnxChecker } from '../helpers/onnx-check.js';

/*
 * model.onnx for a model folder of each embedded backbone: backbone and head as one graph, uint8
 * pixels in, probabilities out, written only when it answers as graft classify does (within 1e-4),
 * and read by python3-onnx's checker. Heads with a hidden layer, and heads trained on float16
 * vectors, export too.
 */

const CLASSES = ['a', 'b', 'c'];

/** A head trained on the backbone's own vectors of a few pictures (three classes by brightness), float32 or half rows. */
async function folderFor(id: string, o: { hiddenUnits?: number; half?: boolean } = {}) {
  const backbone = await loadBackbone(parseBackbone(id));
  const size = backbone.info.inputSize;
  const pictures = [...probePixels(size, 3), ...[40, 120, 220].map((v) => new Uint8Array(size * size * 3).fill(v))];
  const vectors = await backbone.embed(pictures);
  backbone.dispose();
  const rows: VectorRow[] = o.half ? vectors.map((v) => encodeHalf(v)) : vectors;
  const y = [0, 1, 2, 0, 1, 2];
  const head = await trainHead(
    { dim: backbone.info.dim, classes: CLASSES, train: { x: rows, y }, validation: { x: rows, y } },
    { epochs: 3, hiddenUnits: o.hiddenUnits },
  );
  const folder = await packageModel(head, backbone.info, evaluatePredictions([], [], CLASSES));
  return { folder, files: (await fetchBackbone(backbone.info, USER_MODEL_POLICY)).files };
}

describe('model.onnx - a model folder as one ONNX graph', () => {
  let dir: string;
  before(async () => {
    await initBackend();
    dir = await mkdtemp(join(tmpdir(), 'graft-model-onnx-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  for (const [id, o] of [
    ['mobilenet_v2_100', {}],
    ['mobilenet_v2_035', { hiddenUnits: 8 }],
    ['mobilenet_v2_035', { half: true }],
    ['inception_v3_mixed5', {}],
  ] as const) {
    it(
      `${id}${'hiddenUnits' in o ? ', a hidden layer' : ''}${'half' in o ? ', a head trained on float16 vectors' : ''}: written, within ${ONNX_TOLERANCE} of graft classify, and the onnx package's checker accepts it`,
      { timeout: 300_000 },
      async (t) => {
        const { folder, files } = await folderFor(id, o);
        const r = await onnxExport(folder, files);
        assert.ok(!('notWritten' in r), 'notWritten' in r ? r.notWritten : '');
        assert.ok(r.entry.maxDifference <= ONNX_TOLERANCE);
        assert.deepEqual(
          { input: r.entry.input, output: r.entry.output, opset: r.entry.opset, inputSize: r.entry.inputSize },
          { input: PIXELS, output: PROBABILITIES, opset: 13, inputSize: folder.card.backbone.inputSize },
        );
        assert.equal(r.labels, 'a\nb\nc\n');
        const m = onnx.ModelProto.decode(r.bytes);
        assert.deepEqual(
          m.graph!.input!.map((v) => [v.name, v.type!.tensorType!.elemType]),
          [[PIXELS, onnx.TensorProto.DataType.UINT8]],
          'uint8 pixels in',
        );
        assert.deepEqual(
          m.graph!.output!.map((v) => v.name),
          [PROBABILITIES],
        );
        const file = join(dir, `${id}-${Object.keys(o).join('-')}.onnx`);
        await writeFile(file, r.bytes);
        const checked = onnxChecker(file);
        if (checked === 'absent') t.diagnostic('python3-onnx is not installed: its checker did not read the file');
        else assert.equal(checked, undefined, checked);
      },
    );
  }
});
