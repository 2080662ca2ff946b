import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import { ImageError, backendPlan, chooseBackend, decodeImage, initBackend } from '@graft/vision';

describe('vision - backend choice', () => {
  it('plans ONNX Runtime, then tfjs-node-gpu, tfjs-node, wasm, cpu for auto', () => {
    assert.deepEqual(backendPlan('auto'), ['onnxruntime', 'tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu']);
    assert.deepEqual(backendPlan('cpu'), ['cpu']);
    assert.throws(() => backendPlan('gpu' as never), /unknown backend "gpu"/);
  });

  const without = (missing: RegExp) => async (m: string) => {
    if (missing.test(m)) throw new Error(`Cannot find package '${m}'`);
    return import(m);
  };

  it('auto: backbones on ONNX Runtime (its CPU provider where there is no GPU), TF.js on the best backend that loads, and why the rest were passed over', async () => {
    const tried: string[] = [];
    const choice = await initBackend({ importModule: async (m) => (tried.push(m), without(/tfjs-node/)(m)) });
    assert.equal(choice.name, 'onnxruntime');
    assert.deepEqual(choice.onnx, { provider: 'cpu', deviceId: 0, threads: 1 });
    assert.equal(choice.tfjs, 'wasm');
    assert.deepEqual(tried.slice(0, 3), ['onnxruntime-node', '@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']);
    assert.deepEqual(
      choice.skipped.map((s) => s.name),
      ['onnxruntime (cuda)', 'tfjs-node-gpu', 'tfjs-node'],
    );
    assert.match(
      choice.skipped[1].reason,
      /@tensorflow\/tfjs-node-gpu is not installed \(npm install @tensorflow\/tfjs-node-gpu: its install step downloads libtensorflow/,
    );
    assert.equal(tf.getBackend(), 'wasm');
  });

  it('auto without onnxruntime-node: backbones on the best TF.js backend; asked for by name, a clear error', async () => {
    const choice = await chooseBackend({ importModule: without(/onnxruntime|tfjs-node/) });
    assert.equal(choice.name, 'wasm');
    assert.equal(choice.onnx, undefined);
    assert.match(choice.skipped[0].reason, /onnxruntime-node is not installed/);
    await assert.rejects(
      chooseBackend({ preferred: 'onnxruntime', importModule: without(/onnxruntime/) }),
      /backend onnxruntime cannot start: onnxruntime-node is not installed/,
    );
  });

  it('a GPU with a working CUDA provider: ONNX Runtime on that GPU, and TF.js kept off it', async () => {
    const fakeOrt = { listSupportedBackends: () => [{ name: 'cpu' }, { name: 'cuda' }] };
    const probed: number[] = [];
    const importModule = async (m: string) => (m === 'onnxruntime-node' ? fakeOrt : without(/tfjs-node/)(m));
    const gpu = await chooseBackend({ importModule, gpu: '3', probeCuda: async (d) => (probed.push(d), undefined), hasGpu: () => true });
    assert.deepEqual(gpu.onnx, { provider: 'cuda', deviceId: 3, threads: 1 });
    assert.deepEqual(probed, [3], 'the provider is probed on the GPU it will use');
    assert.ok(!gpu.skipped.some((s) => s.name === 'tfjs-node-gpu'), 'tfjs-node-gpu is not even tried beside CUDA');
    const broken = await chooseBackend({ importModule, probeCuda: async () => 'libcudnn.so.9: cannot open shared object file', hasGpu: () => true });
    assert.equal(broken.onnx?.provider, 'cpu');
    assert.match(broken.skipped[0].reason, /libcudnn/);
    const none = await chooseBackend({ importModule, probeCuda: async () => undefined, hasGpu: () => false });
    assert.equal(none.onnx?.provider, 'cpu');
    assert.match(none.skipped[0].reason, /no NVIDIA GPU/);
  });

  it('threads: a positive whole number', async () => {
    await assert.rejects(chooseBackend({ threads: 0 }), /threads must be a positive integer/);
    assert.equal((await chooseBackend({ threads: 2, importModule: without(/tfjs-node/) })).onnx?.threads, 2);
  });
});

describe('vision - decoding', () => {
  it('turns grayscale into three equal channels', async () => {
    const png = await sharp({ create: { width: 30, height: 20, channels: 3, background: { r: 90, g: 90, b: 90 } } })
      .toColourspace('b-w')
      .png()
      .toBuffer();
    assert.equal((await sharp(png).metadata()).channels, 1);
    const px = await decodeImage(png, 8);
    assert.equal(px.length, 8 * 8 * 3);
    assert.ok(px[0] === px[1] && px[1] === px[2] && Math.abs(px[0] - 90) < 3);
  });

  it('converts CMYK to RGB', async () => {
    const jpg = await sharp({ create: { width: 16, height: 16, channels: 3, background: { r: 220, g: 20, b: 20 } } })
      .toColourspace('cmyk')
      .jpeg()
      .toBuffer();
    assert.equal((await sharp(jpg).metadata()).space, 'cmyk');
    const px = await decodeImage(jpg, 4);
    assert.ok(px[0] > 150 && px[1] < 90 && px[2] < 90, `got ${px[0]},${px[1]},${px[2]}`);
  });

  it('applies EXIF orientation', async () => {
    // Left half red, right half blue, stored with orientation 6 (display rotated 90 degrees clockwise).
    const raw = Buffer.alloc(40 * 20 * 3);
    for (let y = 0; y < 20; y++) for (let x = 0; x < 40; x++) raw.set(x < 20 ? [255, 0, 0] : [0, 0, 255], (y * 40 + x) * 3);
    const jpg = await sharp(raw, { raw: { width: 40, height: 20, channels: 3 } })
      .withMetadata({ orientation: 6 })
      .jpeg()
      .toBuffer();
    const px = await decodeImage(jpg, 10);
    const at = (x: number, y: number) => Array.from(px.subarray((y * 10 + x) * 3, (y * 10 + x) * 3 + 3));
    assert.ok(at(5, 1)[0] > 200 && at(5, 1)[2] < 60, `top should be red, got ${at(5, 1)}`);
    assert.ok(at(5, 8)[2] > 200 && at(5, 8)[0] < 60, `bottom should be blue, got ${at(5, 8)}`);
  });

  it('names what is wrong with empty, non-image, truncated and oversized input', async () => {
    const jpg = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#3a6' } })
      .jpeg()
      .toBuffer();
    const cases: [Uint8Array, string, RegExp, object?][] = [
      [new Uint8Array(0), 'EMPTY', /empty/],
      [Buffer.from('this is a text file'), 'DECODE_FAILED', /not a readable image/],
      [jpg.subarray(0, jpg.length / 2), 'DECODE_FAILED', /not a readable image/],
      [jpg, 'TOO_LARGE', /pixel limit/, { maxPixels: 1000 }],
      [jpg, 'TOO_LARGE', /byte limit/, { maxBytes: 100 }],
    ];
    for (const [bytes, code, msg, limits] of cases) {
      await assert.rejects(decodeImage(bytes, 8, limits), (e: Error) => e instanceof ImageError && e.code === code && msg.test(e.message), code);
    }
  });
});
