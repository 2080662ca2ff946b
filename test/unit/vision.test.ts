import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import { BackboneError, ImageError, backendPlan, chooseBackend, decodeImage, initBackend, loadBackbone, parseBackbone, USER_MODEL_POLICY } from '@graft/vision';
import { writeTinyModel } from '../helpers/models.js';

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
    assert.deepEqual(choice.skipped.map((s) => s.name), ['onnxruntime (cuda)', 'tfjs-node-gpu', 'tfjs-node']);
    assert.match(choice.skipped[1].reason, /@tensorflow\/tfjs-node-gpu is not installed \(npm install @tensorflow\/tfjs-node-gpu: its install step downloads libtensorflow/);
    assert.equal(tf.getBackend(), 'wasm');
  });

  it('auto without onnxruntime-node: backbones on the best TF.js backend; asked for by name, a clear error', async () => {
    const choice = await chooseBackend({ importModule: without(/onnxruntime|tfjs-node/) });
    assert.equal(choice.name, 'wasm');
    assert.equal(choice.onnx, undefined);
    assert.match(choice.skipped[0].reason, /onnxruntime-node is not installed/);
    await assert.rejects(chooseBackend({ preferred: 'onnxruntime', importModule: without(/onnxruntime/) }), /backend onnxruntime cannot start: onnxruntime-node is not installed/);
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
    const png = await sharp({ create: { width: 30, height: 20, channels: 3, background: { r: 90, g: 90, b: 90 } } }).toColourspace('b-w').png().toBuffer();
    assert.equal((await sharp(png).metadata()).channels, 1);
    const px = await decodeImage(png, 8);
    assert.equal(px.length, 8 * 8 * 3);
    assert.ok(px[0] === px[1] && px[1] === px[2] && Math.abs(px[0] - 90) < 3);
  });

  it('converts CMYK to RGB', async () => {
    const jpg = await sharp({ create: { width: 16, height: 16, channels: 3, background: { r: 220, g: 20, b: 20 } } }).toColourspace('cmyk').jpeg().toBuffer();
    assert.equal((await sharp(jpg).metadata()).space, 'cmyk');
    const px = await decodeImage(jpg, 4);
    assert.ok(px[0] > 150 && px[1] < 90 && px[2] < 90, `got ${px[0]},${px[1]},${px[2]}`);
  });

  it('applies EXIF orientation', async () => {
    // Left half red, right half blue, stored with orientation 6 (display rotated 90 degrees clockwise).
    const raw = Buffer.alloc(40 * 20 * 3);
    for (let y = 0; y < 20; y++) for (let x = 0; x < 40; x++) raw.set(x < 20 ? [255, 0, 0] : [0, 0, 255], (y * 40 + x) * 3);
    const jpg = await sharp(raw, { raw: { width: 40, height: 20, channels: 3 } }).withMetadata({ orientation: 6 }).jpeg().toBuffer();
    const px = await decodeImage(jpg, 10);
    const at = (x: number, y: number) => Array.from(px.subarray((y * 10 + x) * 3, (y * 10 + x) * 3 + 3));
    assert.ok(at(5, 1)[0] > 200 && at(5, 1)[2] < 60, `top should be red, got ${at(5, 1)}`);
    assert.ok(at(5, 8)[2] > 200 && at(5, 8)[0] < 60, `bottom should be blue, got ${at(5, 8)}`);
  });

  it('names what is wrong with empty, non-image, truncated and oversized input', async () => {
    const jpg = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#3a6' } }).jpeg().toBuffer();
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

describe('vision - backbones', () => {
  let dir: string;
  let server: Server;
  let base: string;
  let requests = 0;
  before(async () => {
    await initBackend();
    dir = await mkdtemp(join(tmpdir(), 'graft-model-'));
    await writeTinyModel(dir);
    await mkdir(join(dir, 'tiny16'));
    await writeTinyModel(join(dir, 'tiny16'), 16); // the smallest input an override may name
    server = createServer(async (req, res) => {
      requests++;
      const path = (req.url ?? '/').split('?')[0];
      // Hostile sources for the model-source policy.
      if (path === '/to-file/model.json') return void res.writeHead(302, { location: 'file:///etc/passwd' }).end();
      if (path === '/moved/model.json') return void res.writeHead(301, { location: '/model.json' }).end();
      if (path === '/escape/model.json') {
        const json = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8'));
        json.weightsManifest[0].paths = ['../../../etc/passwd'];
        return void res.end(JSON.stringify(json));
      }
      try {
        res.end(await readFile(join(dir, (req.url ?? '/').split('?')[0].slice(1))));
      } catch {
        res.writeHead(404).end();
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  after(async () => {
    server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('preprocesses exactly as configured (checked by hand)', async () => {
    // Pixel values 0, 127.5-ish and 255 per channel; symmetric maps x to x/127.5 - 1.
    const b = await loadBackbone(parseBackbone(`file://${dir}/model.json`, { preprocess: 'symmetric' }), USER_MODEL_POLICY);
    assert.equal(b.info.dim, 3);
    assert.equal(b.info.inputSize, 4);
    const px = new Uint8Array(4 * 4 * 3);
    for (let i = 0; i < 16; i++) px.set([0, i < 8 ? 255 : 0, 51], i * 3);
    const [v] = await b.embed([px]);
    // channel 0: all -1; channel 1: half 1, half -1 -> 0; channel 2: 51/127.5 - 1 = -0.6
    assert.ok(Math.abs(v[0] + 1) < 1e-5 && Math.abs(v[1]) < 1e-5 && Math.abs(v[2] + 0.6) < 1e-5, `got ${Array.from(v)}`);
    const unit = await loadBackbone(parseBackbone(`file://${dir}/model.json`, { preprocess: 'unit' }), USER_MODEL_POLICY);
    const [u] = await unit.embed([px]);
    assert.ok(Math.abs(u[1] - 0.5) < 1e-5 && Math.abs(u[2] - 0.2) < 1e-5, `got ${Array.from(u)}`);
    assert.notEqual(unit.info.fingerprint, b.info.fingerprint, 'preprocessing is part of the fingerprint');
    b.dispose();
    unit.dispose();
  });

  it('cuts at a named layer and refuses an unknown one', async () => {
    const b = await loadBackbone(parseBackbone(`file://${dir}`, { bottleneck: 'feat' }), USER_MODEL_POLICY);
    assert.equal(b.info.dim, 3);
    b.dispose();
    await assert.rejects(loadBackbone(parseBackbone(`file://${dir}`, { bottleneck: 'nope' }), USER_MODEL_POLICY), (e: Error) => e instanceof BackboneError && /no layer "nope"/.test(e.message));
  });

  it('downloads over HTTP once, then loads from the verified cache', async () => {
    const cacheDir = await mkdtemp(join(tmpdir(), 'graft-cache-'));
    try {
      const spec = parseBackbone(`${base}/model.json`);
      const first = await loadBackbone(spec, { ...USER_MODEL_POLICY, cacheDir });
      const n = requests;
      assert.equal(n, 2, 'model.json and one shard');
      const second = await loadBackbone(spec, { ...USER_MODEL_POLICY, cacheDir });
      assert.equal(requests, n, 'no request for a cached model');
      assert.equal(second.info.fingerprint, first.info.fingerprint);
      // Corrupt the cached shard: the next load notices, discards it and downloads again.
      const [entry] = await readdir(cacheDir);
      await writeFile(join(cacheDir, entry, 'w.bin'), Buffer.from('garbage'));
      const third = await loadBackbone(spec, { ...USER_MODEL_POLICY, cacheDir });
      assert.equal(requests, n + 2);
      assert.equal(third.info.fingerprint, first.info.fingerprint);
      for (const b of [first, second, third]) b.dispose();
    } finally {
      await rm(cacheDir, { recursive: true, force: true });
    }
  });

  it('many loaders sharing one cache folder (processes or containers on one volume) each get a whole model', async () => {
    const cacheDir = await mkdtemp(join(tmpdir(), 'graft-cache-'));
    try {
      const spec = parseBackbone(`${base}/model.json?shared`);
      const all = await Promise.all(Array.from({ length: 8 }, () => loadBackbone(spec, { ...USER_MODEL_POLICY, cacheDir })));
      assert.equal(new Set(all.map((b) => b.info.fingerprint)).size, 1);
      for (const b of all) b.dispose();
      const again = await loadBackbone(spec, { ...USER_MODEL_POLICY, cacheDir });
      assert.equal(again.info.fingerprint, all[0].info.fingerprint, 'and the cache they left is whole');
      again.dispose();
      assert.deepEqual((await readdir(cacheDir)).filter((f) => f.includes('.tmp')), [], 'no temp folder left behind');
    } finally {
      await rm(cacheDir, { recursive: true, force: true });
    }
  });

  it('follows http redirects, but never to another scheme or a path outside the model', async () => {
    const cacheDir = await mkdtemp(join(tmpdir(), 'graft-cache-'));
    try {
      const moved = await loadBackbone(parseBackbone(`${base}/moved/model.json`), { ...USER_MODEL_POLICY, cacheDir });
      assert.equal(moved.info.dim, 3);
      moved.dispose();
      await assert.rejects(loadBackbone(parseBackbone(`${base}/to-file/model.json`), { ...USER_MODEL_POLICY, cacheDir }), /redirects to file:/);
      await assert.rejects(loadBackbone(parseBackbone(`${base}/escape/model.json`), { ...USER_MODEL_POLICY, cacheDir }), /outside its folder/);
    } finally {
      await rm(cacheDir, { recursive: true, force: true });
    }
  });

  it('refuses local files when not allowed, models over the size limit, and weights that are not the pinned ones', async () => {
    await assert.rejects(loadBackbone(parseBackbone(`file://${dir}/model.json`), { allowFiles: false }), /local file.*--allow-model-files/);
    await assert.rejects(loadBackbone(parseBackbone(`file://${dir}/model.json`), { ...USER_MODEL_POLICY, maxBytes: 10 }), /over the 10-byte limit/);
    const cacheDir = await mkdtemp(join(tmpdir(), 'graft-cache-'));
    try {
      await assert.rejects(loadBackbone(parseBackbone(`${base}/model.json?small`), { ...USER_MODEL_POLICY, cacheDir, maxBytes: 100 }), /over the 100-byte limit/);
      await assert.rejects(loadBackbone({ ...parseBackbone(`file://${dir}/model.json`), weightsSha256: '0'.repeat(64) }, USER_MODEL_POLICY), /not the pinned/);
    } finally {
      await rm(cacheDir, { recursive: true, force: true });
    }
  });

  it('mirrors: the address failing, a mirror serving; each failed address tried once per process', async () => {
    const cacheDir = await mkdtemp(join(tmpdir(), 'graft-cache-'));
    try {
      const seen: string[] = [];
      const warnings: string[] = [];
      const spec = { ...parseBackbone(`${base}/down-hub/model.json`, { inputSize: 16 }), id: 'mirrored', mirrors: [`${base}/tiny16/model.json?kaggle`] };
      const a = await loadBackbone(spec, { ...USER_MODEL_POLICY, cacheDir, onSource: (u) => seen.push(u), onWarning: (w) => warnings.push(w) });
      assert.deepEqual(seen, [spec.mirrors[0]]);
      assert.match(warnings[0], /mirrored: .*down-hub.*loaded from .*tiny16/);
      assert.equal(a.info.id, 'mirrored');
      assert.equal(a.info.url, spec.mirrors[0], 'the address that served is recorded');
      a.dispose();
      const before = requests;
      const b = await loadBackbone(spec, { ...USER_MODEL_POLICY, cacheDir, onSource: (u) => seen.push(u) });
      assert.equal(requests, before, 'the failed address is not asked again, the mirror comes from the cache');
      b.dispose();
    } finally {
      await rm(cacheDir, { recursive: true, force: true });
    }
  });

  it('mirrors: every address failing is an error naming each, and the offline default', async () => {
    const spec = { ...parseBackbone(`${base}/gone-1/model.json`), id: 'mirrored', mirrors: [`${base}/gone-2/model.json`] };
    await assert.rejects(loadBackbone(spec, USER_MODEL_POLICY), /cannot load backbone mirrored from any of its 2 addresses: .*gone-1.*gone-2.*--backbone auto, needs no network/s);
  });

  it('auto is the embedded ImageNet MobileNetV2-1.0: no network, pinned weights, 1280-d', async () => {
    const b = await loadBackbone(parseBackbone('auto'), USER_MODEL_POLICY);
    assert.equal(b.info.id, 'mobilenet_v2_100');
    assert.equal(b.info.url, 'embedded:mobilenet_v2_1.0_224');
    assert.equal(b.info.dim, 1280);
    assert.equal(b.info.inputSize, 224);
    b.dispose();
  });

  it('reports an unreachable model URL by name', async () => {
    await assert.rejects(loadBackbone(parseBackbone(`${base}/missing/model.json`), { ...USER_MODEL_POLICY, cacheDir: dir }), (e: Error) => e instanceof BackboneError && /missing\/model.json: HTTP 404/.test(e.message));
  });

  it('keeps the tensor count flat: the same after 1,000 images as after 100', async () => {
    const b = await loadBackbone(parseBackbone(`file://${dir}`), USER_MODEL_POLICY);
    const px = new Uint8Array(4 * 4 * 3).fill(7);
    const batch = [px, px, px, px];
    for (let i = 0; i < 25; i++) await b.embed(batch);
    const after100 = tf.memory().numTensors;
    for (let i = 0; i < 225; i++) await b.embed(batch);
    assert.equal(tf.memory().numTensors, after100);
    assert.equal(b.stats.images, 1000);
    b.dispose();
  });
});
