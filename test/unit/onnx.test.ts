import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import {
  PARITY_TOLERANCE,
  USER_MODEL_POLICY,
  describeOnnx,
  initBackend,
  loadBackbone,
  onnx,
  parseBackbone,
  probePixels,
  relativeDifference,
  type Backbone,
  type BackboneSpec,
} from '@graft/vision';
import { denseZoo, graphZoo, layersZoo, unsupportedLayersModel } from '../helpers/onnx-zoo.js';
import { onnxChecker } from '../helpers/onnx-check.js';

/*
 * The TF.js -> ONNX converter and ONNX backbones: every layer and op kind it writes against TF.js on
 * the same pixels, the embedded backbones, the fallback to TF.js with its reason, the cache of
 * conversions, an outside checker of the files, and ONNX models written by other tools.
 */

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const FIXTURES = join(ROOT, 'test', 'fixtures', 'onnx');

/** Pixels that are not the probe's: a seeded noise picture per image. */
function noise(size: number, count: number, seed = 5): Uint8Array[] {
  let v = seed;
  return Array.from({ length: count }, () =>
    Uint8Array.from({ length: size * size * 3 }, () => {
      v = (v * 1103515245 + 12345) >>> 0;
      return v >>> 24;
    }),
  );
}

/** The largest relative difference between the backbone on ONNX Runtime and on TF.js, on probe and noise pictures. */
async function parity(onOrt: Backbone, onTfjs: Backbone): Promise<number> {
  const pics = [...probePixels(onOrt.info.inputSize, 2), ...noise(onOrt.info.inputSize, 3)];
  return relativeDifference(await onTfjs.embed(pics), await onOrt.embed(pics.map((p) => p.slice())));
}

let dir: string;
let cacheDir: string;
before(async () => {
  await initBackend({ preferred: 'onnxruntime' });
  dir = await mkdtemp(join(tmpdir(), 'graft-onnx-'));
  cacheDir = join(dir, 'cache');
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The same backbone on ONNX Runtime (converted, checked) and on TF.js. */
async function both(spec: BackboneSpec): Promise<{ onOrt: Backbone; onTfjs: Backbone; notes: string[] }> {
  const notes: string[] = [];
  const onOrt = await loadBackbone(spec, { ...USER_MODEL_POLICY, cacheDir, onRuntimeNote: (n) => notes.push(n) });
  const onTfjs = await loadBackbone(spec, { ...USER_MODEL_POLICY, cacheDir, runtime: 'tfjs' });
  return { onOrt, onTfjs, notes };
}

describe('ONNX converter - parity with TF.js', () => {
  it('every Keras layer kind it writes (convolutions of every kind, batch norm, every activation, merges, pools, padding) matches TF.js within 1e-4', async () => {
    const { onOrt, onTfjs, notes } = await both(parseBackbone(await layersZoo(join(dir, 'layers'))));
    assert.deepEqual(notes, []);
    assert.equal(onOrt.runtime.name, 'onnxruntime');
    assert.equal(onTfjs.runtime.name, 'wasm');
    assert.equal(onOrt.info.fingerprint, onTfjs.info.fingerprint, 'one fingerprint whatever the runtime: one cache');
    const d = await parity(onOrt, onTfjs);
    assert.ok(d <= PARITY_TOLERANCE, `relative difference ${d}`);
    assert.ok(d > 0 || onOrt.info.dim > 0);
    onOrt.dispose();
    onTfjs.dispose();
  });

  it('global pools, flatten, reshape, dense layers and a softmax: a 2-d output, within 1e-4', async () => {
    const { onOrt, onTfjs } = await both(parseBackbone(await denseZoo(join(dir, 'dense'))));
    assert.equal(onOrt.runtime.name, 'onnxruntime');
    assert.equal(onOrt.info.dim, 7);
    assert.ok((await parity(onOrt, onTfjs)) <= PARITY_TOLERANCE);
    onOrt.dispose();
    onTfjs.dispose();
  });

  it('every TF graph op kind it writes (a frozen .pb through graft GraphDef reader) matches TF.js within 1e-4', async () => {
    const pb = join(dir, 'zoo.pb');
    await writeFile(pb, graphZoo());
    const { onOrt, onTfjs, notes } = await both(parseBackbone(pb, { bottleneck: 'out', inputNode: 'input' }));
    assert.deepEqual(notes, []);
    assert.equal(onOrt.runtime.name, 'onnxruntime');
    assert.equal(onOrt.info.dim, 32);
    const d = await parity(onOrt, onTfjs);
    assert.ok(d <= PARITY_TOLERANCE, `relative difference ${d}`);
    onOrt.dispose();
    onTfjs.dispose();
  });

  for (const id of ['mobilenet_v2_100', 'mobilenet_v2_035', 'inception_v3_mixed5']) {
    it(`the embedded ${id} matches TF.js within 1e-4 (vectors from either runtime share its cache)`, async () => {
      const { onOrt, onTfjs } = await both(parseBackbone(id));
      assert.equal(onOrt.runtime.name, 'onnxruntime');
      assert.equal(onOrt.info.fingerprint, onTfjs.info.fingerprint);
      const d = await parity(onOrt, onTfjs);
      assert.ok(d <= PARITY_TOLERANCE, `${id}: relative difference ${d}`);
      onOrt.dispose();
      onTfjs.dispose();
    });
  }
});

describe('ONNX converter - fallback, cache, outside checker', () => {
  it('a layer it cannot write keeps the backbone on TF.js, with the reason said once and remembered', async () => {
    const folder = await unsupportedLayersModel(join(dir, 'up'));
    const notes: string[] = [];
    const b = await loadBackbone(parseBackbone(folder), { ...USER_MODEL_POLICY, cacheDir, onRuntimeNote: (n) => notes.push(n) });
    assert.equal(b.runtime.name, 'wasm');
    assert.match(b.runtime.note ?? '', /cannot convert it to ONNX: layer up_sampling2d\w* is a UpSampling2D, which graft cannot convert/);
    assert.equal(notes.length, 1);
    assert.match(notes[0], /stays on TF\.js/);
    assert.equal((await b.embed(noise(8, 1))).length, 1, 'and it still runs');
    const again = await loadBackbone(parseBackbone(folder), { ...USER_MODEL_POLICY, cacheDir });
    assert.equal(again.runtime.name, 'wasm');
    assert.match(again.runtime.note ?? '', /UpSampling2D/, 'the verdict comes back from the cache');
    b.dispose();
    again.dispose();
  });

  it('a resolved backbone converted before loads from the cache without TF.js, and a damaged cached file is converted again', async () => {
    const first = await loadBackbone(parseBackbone('mobilenet_v2_035'), { cacheDir });
    const info = first.info;
    first.dispose();
    const files = (await readdir(join(cacheDir, 'onnx'))).filter((f) => f.startsWith(info.fingerprint));
    assert.deepEqual(files.map((f) => f.replace(/.*\./, '')).sort(), ['json', 'onnx']);
    const verdict = JSON.parse(
      await readFile(
        join(
          cacheDir,
          'onnx',
          files.find((f) => f.endsWith('.json'))!,
        ),
        'utf8',
      ),
    );
    assert.equal(verdict.onnx, true);
    assert.ok(verdict.maxRelativeDiff <= PARITY_TOLERANCE);
    const again = await loadBackbone(info, { cacheDir });
    assert.equal(again.runtime.name, 'onnxruntime');
    again.dispose();
    const model = join(
      cacheDir,
      'onnx',
      files.find((f) => f.endsWith('.onnx'))!,
    );
    await writeFile(model, Buffer.from('damaged'));
    const repaired = await loadBackbone(info, { cacheDir });
    assert.equal(repaired.runtime.name, 'onnxruntime');
    assert.ok((await readFile(model)).length > 1000, 'converted and cached again');
    repaired.dispose();
  });

  it('the converted files pass the onnx package full checker (python3-onnx), an outside reader of the format', async (t) => {
    const converted = (await readdir(join(cacheDir, 'onnx'))).filter((f) => f.endsWith('.onnx'));
    assert.ok(converted.length >= 3, `converted: ${converted.join(', ')}`);
    if (onnxChecker(join(cacheDir, 'onnx', converted[0])) === 'absent') return t.skip('python3-onnx is not installed (apt-get install python3-onnx)');
    for (const f of converted) assert.equal(onnxChecker(join(cacheDir, 'onnx', f)), undefined, f);
  });
});

describe('ONNX models as backbones', () => {
  /** The model's own value `name`, computed by ONNX Runtime on hand-preprocessed input: the reference. */
  async function reference(
    path: string,
    value: string,
    pixels: Uint8Array[],
    size: number,
    nchw: boolean,
    pre: (v: number, c: number) => number,
  ): Promise<Float32Array[]> {
    const model = onnx.ModelProto.decode(await readFile(path));
    model.graph!.output!.push({ name: value, type: { tensorType: { elemType: 1 } } });
    const session = await ort.InferenceSession.create(onnx.ModelProto.encode(model).finish());
    const input = session.inputNames[0];
    const out: Float32Array[] = [];
    for (const px of pixels) {
      const x = new Float32Array(size * size * 3);
      for (let i = 0; i < size * size; i++) for (let c = 0; c < 3; c++) x[nchw ? c * size * size + i : i * 3 + c] = pre(px[i * 3 + c], c);
      const y = (await session.run({ [input]: new ort.Tensor('float32', x, nchw ? [1, 3, size, size] : [1, size, size, 3]) }))[value];
      out.push(Float32Array.from(y.data as Float32Array));
    }
    await session.release();
    return out;
  }

  const imagenet = (v: number, c: number) => (v / 255 - [0.485, 0.456, 0.406][c]) / [0.229, 0.224, 0.225][c];

  it('PyTorch-style (NCHW, ImageNet mean and std, a free batch, a classifier on top): cut at the pooled features, fed as torchvision feeds it', async () => {
    const path = join(FIXTURES, 'torchvision-style.onnx');
    const d = describeOnnx(await readFile(path), path);
    assert.deepEqual(d.input, { name: 'input', layout: 'nchw', size: 64, dims: ['batch_size', 3, 64, 64] });
    assert.deepEqual(d.candidates, ['/avgpool/GlobalAveragePool_output_0']);
    assert.deepEqual(d.classifier, { node: '/classifier/Gemm', op: 'Gemm', classes: 10 });
    const b = await loadBackbone(parseBackbone(path, { preprocess: 'imagenet' }), USER_MODEL_POLICY);
    assert.equal(b.info.format, 'onnx');
    assert.equal(b.info.bottleneck, '/avgpool/GlobalAveragePool_output_0', 'cut where graft suggests, and says which');
    assert.equal(b.info.dim, 16);
    assert.equal(b.info.inputSize, 64);
    const pics = noise(64, 3);
    const got = await b.embed(pics.map((p) => p.slice()));
    const want = await reference(path, '/avgpool/GlobalAveragePool_output_0', pics, 64, true, imagenet);
    assert.ok(relativeDifference(want, got) < 1e-5, `difference ${relativeDifference(want, got)}`);
    b.dispose();
  });

  it('cut elsewhere by value or node name (a spatial value, pooled by graft), at opset 18 too (ReduceMean takes its axes as an input)', async () => {
    const path = join(FIXTURES, 'torchvision-style.onnx');
    const bytes = await readFile(path);
    const byValue = await loadBackbone(parseBackbone(path, { preprocess: 'imagenet', bottleneck: '/features/features.5/Relu_output_0' }), USER_MODEL_POLICY);
    const byNode = await loadBackbone(parseBackbone(path, { preprocess: 'imagenet', bottleneck: '/features/features.5/Relu' }), USER_MODEL_POLICY);
    const m = onnx.ModelProto.decode(bytes);
    m.opsetImport = [{ domain: '', version: 18 }];
    const v18 = join(dir, 'opset18.onnx');
    await writeFile(v18, onnx.ModelProto.encode(m).finish());
    const at18 = await loadBackbone(parseBackbone(v18, { preprocess: 'imagenet', bottleneck: '/features/features.5/Relu_output_0' }), USER_MODEL_POLICY);
    const pooled = await loadBackbone(parseBackbone(path, { preprocess: 'imagenet' }), USER_MODEL_POLICY);
    const pics = noise(64, 2, 9);
    const want = await pooled.embed(pics.map((p) => p.slice()));
    for (const b of [byValue, byNode, at18]) {
      assert.equal(b.info.dim, 16);
      // GlobalAveragePool of the Relu is what graft's pooling of it computes.
      assert.ok(relativeDifference(want, await b.embed(pics.map((p) => p.slice()))) < 1e-5);
      b.dispose();
    }
    pooled.dispose();
    assert.notEqual(byValue.info.fingerprint, pooled.info.fingerprint, 'another cut is another cache key');
  });

  it('tf2onnx-style (NHWC, a Transpose inside, ReduceMean, MatMul + Add + Softmax): NHWC found, cut before the dense layer', async () => {
    const path = join(FIXTURES, 'tf2onnx-style.onnx');
    const d = describeOnnx(await readFile(path), path);
    assert.equal(d.input.layout, 'nhwc');
    assert.deepEqual(d.candidates, ['global_average_pooling2d/Mean:0']);
    assert.equal(d.classifier?.classes, 5);
    const b = await loadBackbone(parseBackbone(path, { preprocess: 'symmetric' }), USER_MODEL_POLICY);
    assert.equal(b.info.dim, 12);
    const pics = noise(64, 4, 3);
    const got = await b.embed(pics.map((p) => p.slice()));
    const want = await reference(path, 'global_average_pooling2d/Mean:0', pics, 64, false, (v) => v / 127.5 - 1);
    assert.ok(relativeDifference(want, got) < 1e-5);
    b.dispose();
  });

  it('refuses, naming the file and the fix: an old opset, two inputs, external weights, bytes that are not ONNX, an unknown cut', async () => {
    const path = join(FIXTURES, 'torchvision-style.onnx');
    const m = () => onnx.ModelProto.decode(readFileSync(path));
    const write = async (name: string, model: onnx.ModelProto) => {
      const p = join(dir, name);
      await writeFile(p, onnx.ModelProto.encode(model).finish());
      return p;
    };
    const old = m();
    old.opsetImport = [{ domain: '', version: 11 }];
    await assert.rejects(
      loadBackbone(parseBackbone(await write('old.onnx', old)), USER_MODEL_POLICY),
      /old\.onnx uses ONNX opset 11; graft reads opset 13 or later \(export again/,
    );
    const two = m();
    two.graph!.input!.push({ name: 'mask', type: { tensorType: { elemType: 1, shape: { dim: [{ dimValue: 1 }] } } } });
    await assert.rejects(
      loadBackbone(parseBackbone(await write('two.onnx', two)), USER_MODEL_POLICY),
      /two\.onnx has 2 inputs; graft feeds models of one image input/,
    );
    const ext = m();
    ext.graph!.initializer![0].dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
    await assert.rejects(loadBackbone(parseBackbone(await write('ext.onnx', ext)), USER_MODEL_POLICY), /keeps its weights in external files/);
    const junk = join(dir, 'junk.onnx');
    await writeFile(junk, Buffer.from('{"this": "is not onnx"}'));
    await assert.rejects(loadBackbone(parseBackbone(junk), USER_MODEL_POLICY), /junk\.onnx is not an ONNX model/);
    await assert.rejects(
      loadBackbone(parseBackbone(path, { bottleneck: 'nowhere' }), USER_MODEL_POLICY),
      /has no value or node "nowhere" \(graft inspect lists them\)/,
    );
  });
});
