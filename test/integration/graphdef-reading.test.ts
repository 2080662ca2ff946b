import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { zipSync } from 'fflate';
import { pack } from 'tar-stream';
import { graphDefModel, initBackend, inspectModel, loadBackbone, parseBackbone, USER_MODEL_POLICY } from '@graft/vision';
import { SEED_INPUT, reference, seedGraph } from '../helpers/graphdef.js';

/** A .tgz holding one file. */
async function tgz(name: string, bytes: Uint8Array): Promise<Uint8Array> {
  const p = pack();
  const parts: Buffer[] = [];
  p.on('data', (c: unknown) => parts.push(c as Buffer));
  const done = new Promise<void>((resolve) => p.on('end', () => resolve()));
  p.entry({ name: 'README' }, 'not the model');
  p.entry({ name }, Buffer.from(bytes));
  p.finalize();
  await done;
  return gzipSync(Buffer.concat(parts));
}

describe('graphdef - frozen TensorFlow graphs (.pb)', () => {
  let dir = '';
  let server: Server;
  let base = '';
  const hits: string[] = [];
  const served = new Map<string, Uint8Array>();

  before(async () => {
    await initBackend();
    dir = await mkdtemp(join(tmpdir(), 'graft-pb-'));
    server = createServer((req, res) => {
      hits.push(req.url!);
      const body = served.get(req.url!);
      if (!body) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-length': body.length }).end(body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  after(async () => {
    server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('converts the seed op set to a TF.js graph that equals the same network in tf ops', async () => {
    const g = seedGraph();
    const path = join(dir, 'seed.pb');
    await writeFile(path, g.bytes);
    const bb = await loadBackbone(parseBackbone(path), USER_MODEL_POLICY);
    try {
      // Read from the graph, not assumed: its resize size, its pool_3, the pixels it takes.
      assert.equal(bb.info.inputSize, SEED_INPUT);
      assert.equal(bb.info.bottleneck, 'pool_3');
      assert.equal(bb.info.preprocess, 'none', 'the graph preprocesses (x - 128) / 128 itself');
      assert.equal(bb.info.dim, g.dim);
      const n = 4;
      const px = SEED_INPUT * SEED_INPUT * 3;
      const images = [...Array(n)].map((_, k) => Uint8Array.from({ length: px }, (_, i) => (i * 13 + k * 71) % 256));
      const got = await bb.embed(images);
      const want = reference(g.weights, tf.tensor4d(Float32Array.from(images.flatMap((a) => [...a])), [n, SEED_INPUT, SEED_INPUT, 3]));
      const w = (await want.data()) as Float32Array;
      want.dispose();
      let maxDiff = 0;
      for (let i = 0; i < n; i++) for (let j = 0; j < g.dim; j++) maxDiff = Math.max(maxDiff, Math.abs(got[i][j] - w[i * g.dim + j]));
      assert.ok(maxDiff < 1e-4, `max abs difference ${maxDiff}`);
      assert.ok(
        w.some((v) => Math.abs(v) > 0.01),
        'the network computes something',
      );
      // The same .pb loads to the same fingerprint (what classify relies on).
      const again = await loadBackbone(bb.info, USER_MODEL_POLICY);
      assert.equal(again.info.fingerprint, bb.info.fingerprint);
      again.dispose();
    } finally {
      bb.dispose();
    }
  });

  it('names an op it cannot run, and a truncated file, clearly', async () => {
    const odd = join(dir, 'odd.pb');
    await writeFile(odd, seedGraph({ extraOp: 'FancyNewOp' }).bytes);
    await assert.rejects(
      loadBackbone(parseBackbone(odd, { bottleneck: 'mystery' }), USER_MODEL_POLICY),
      /node mystery is a FancyNewOp, an op graft cannot run/,
    );
    const bytes = seedGraph().bytes;
    const cut = join(dir, 'cut.pb');
    await writeFile(cut, bytes.subarray(0, Math.floor(bytes.length * 0.6)));
    await assert.rejects(loadBackbone(parseBackbone(cut), USER_MODEL_POLICY), (err: Error) => /cut\.pb/.test(err.message) && /truncated/.test(err.message));
    await assert.rejects(loadBackbone(parseBackbone(join(dir, 'seed.pb'), { bottleneck: 'nope' }), USER_MODEL_POLICY), /has no node "nope"/);
  });

  it('inspect lists nodes with shapes, the input and preprocessing, and finds the bottleneck by structure', async () => {
    const path = join(dir, 'renamed.pb');
    await writeFile(path, seedGraph({ poolName: 'avgpool_final' }).bytes);
    const r = await inspectModel(path, USER_MODEL_POLICY);
    assert.equal(r.format, 'graphdef');
    assert.deepEqual(r.bottleneckCandidates, ['avgpool_final'], 'the pooled output feeding the classifier');
    assert.deepEqual(r.input, { name: 'ResizeBilinear', size: SEED_INPUT, preprocessing: '(x - 128) * 0.0078125', decodingReplaced: true });
    assert.deepEqual(r.nodes.find((n) => n.name === 'avgpool_final')?.shape, [1, 1, 1, 14]);
    assert.deepEqual(r.nodes.find((n) => n.name === 'softmax')?.shape, [1, 5]);
    assert.equal(r.nodes.find((n) => n.name === 'DecodeJpeg')?.shape, null, 'the replaced head is not run');
    // And a converted model cut at that candidate works without naming it.
    const files = graphDefModel(seedGraph({ poolName: 'avgpool_final' }).bytes, { origin: path });
    assert.equal(files.graph.bottleneck, 'avgpool_final');
    // Fed elsewhere (--input-node): everything before that node is pruned, nothing is assumed about pixels.
    assert.throws(() => graphDefModel(seedGraph().bytes, { origin: path, inputNode: 'Mul' }), /Mul does not say its image size: pass --input-size/);
    const at = graphDefModel(seedGraph().bytes, { origin: path, inputNode: 'Mul', inputSize: SEED_INPUT });
    assert.deepEqual([at.graph.inputNode, at.graph.inputSize, at.graph.pixelsIn], ['Mul', SEED_INPUT, false]);
    const ops = (at.json.modelTopology as { node: { name: string; op: string }[] }).node;
    assert.equal(ops.find((n) => n.name === 'Mul')?.op, 'Placeholder');
    assert.ok(!ops.some((n) => ['Sub', 'DecodeJpeg', 'ResizeBilinear'].includes(n.name)), 'the head before the input is pruned');
  });

  it('downloads a .pb out of a .zip or .tgz archive, converts it once and loads later copies from the cache', async () => {
    const g = seedGraph();
    served.set('/models/seed.zip', zipSync({ 'seed_2015/LICENSE': new TextEncoder().encode('x'), 'seed_2015/seed_graph.pb': g.bytes }));
    served.set('/models/seed.tgz', await tgz('seed_graph.pb', g.bytes));
    const cacheDir = join(dir, 'cache');
    const fps: string[] = [];
    for (const archive of ['seed.zip', 'seed.tgz']) {
      const url = `${base}/models/${archive}#seed_graph.pb`;
      const before = hits.length;
      const a = await loadBackbone(parseBackbone(url), { ...USER_MODEL_POLICY, cacheDir });
      const b = await loadBackbone(parseBackbone(url), { ...USER_MODEL_POLICY, cacheDir });
      assert.equal(hits.length - before, 1, `${archive}: downloaded once`);
      assert.equal(a.info.fingerprint, b.info.fingerprint);
      fps.push(a.info.fingerprint);
      a.dispose();
      b.dispose();
    }
    assert.equal(fps[0], fps[1], 'the same graph, whichever archive it came in');
    await assert.rejects(
      loadBackbone(parseBackbone(`${base}/models/seed.zip#other.pb`), { ...USER_MODEL_POLICY, cacheDir: join(dir, 'c2') }),
      /has no other\.pb/,
    );
    await assert.rejects(loadBackbone(parseBackbone(`${base}/models/seed.zip`), { ...USER_MODEL_POLICY, cacheDir }), /name the \.pb inside it after '#'/);
  });
});
