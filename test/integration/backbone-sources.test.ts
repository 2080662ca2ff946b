import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { BackboneError, initBackend, loadBackbone, parseBackbone, USER_MODEL_POLICY } from '@graft/vision';
import { writeTinyModel } from '../helpers/models.js';

/* Backbones from their sources: files, HTTP (a local server: downloads, the cache, redirects), names. */

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
    await assert.rejects(
      loadBackbone(parseBackbone(`file://${dir}`, { bottleneck: 'nope' }), USER_MODEL_POLICY),
      (e: Error) => e instanceof BackboneError && /no layer "nope"/.test(e.message),
    );
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
      assert.deepEqual(
        (await readdir(cacheDir)).filter((f) => f.includes('.tmp')),
        [],
        'no temp folder left behind',
      );
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
      await assert.rejects(
        loadBackbone(parseBackbone(`${base}/model.json?small`), { ...USER_MODEL_POLICY, cacheDir, maxBytes: 100 }),
        /over the 100-byte limit/,
      );
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
    await assert.rejects(
      loadBackbone(spec, USER_MODEL_POLICY),
      /cannot load backbone mirrored from any of its 2 addresses: .*gone-1.*gone-2.*--backbone auto, needs no network/s,
    );
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
    await assert.rejects(
      loadBackbone(parseBackbone(`${base}/missing/model.json`), { ...USER_MODEL_POLICY, cacheDir: dir }),
      (e: Error) => e instanceof BackboneError && /missing\/model.json: HTTP 404/.test(e.message),
    );
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
