import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { generateSampleSet } from '@graft/cli';
import { runGraft } from '../helpers/process.js';

/*
 * ONNX Runtime end to end on a local cluster: the default job runs its backbone there (the job
 * record and the workers say so), the same photos on TF.js's wasm backend hit the same vector cache,
 * and an ONNX model written the way PyTorch writes one trains as a backbone and classifies.
 */

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const TORCHVISION_STYLE = join(ROOT, 'test', 'fixtures', 'onnx', 'torchvision-style.onnx');

describe('ONNX Runtime on a local cluster', () => {
  let work: string;
  let data: string;
  let env: NodeJS.ProcessEnv;
  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'graft-onnx-cluster-'));
    data = await generateSampleSet(join(work, 'photos'), 8, 17, ['circle', 'square', 'stripes']);
    env = { GRAFT_HOME: join(work, 'home'), GRAFT_CACHE_DIR: join(work, 'models'), GRAFT_LOG_LEVEL: 'info' };
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });
  /** The cluster's log files that `pick` names: each whole, or its last `tail` lines under its name. */
  const clusterLogs = async (pick: (name: string) => boolean, tail?: number): Promise<string[]> => {
    const dir = join(env.GRAFT_HOME!, 'cluster', 'logs');
    const names = (await readdir(dir).catch(() => [] as string[])).filter(pick);
    return Promise.all(
      names.map(async (n) => {
        const text = await readFile(join(dir, n), 'utf8');
        return tail === undefined ? text : `--- ${n}\n${text.split('\n').slice(-tail).join('\n')}`;
      }),
    );
  };
  const workerLogs = async (): Promise<string> => (await clusterLogs((n) => /^worker-\d+\.log$/.test(n))).join('');
  /** A graft command given 200 s of the test's 240 (a hang shows its output and the cluster's logs). */
  const graft = async (args: string[]) => {
    const r = await runGraft(args, env, 200_000);
    return r.code === 0 ? r : { ...r, output: `${r.output}\n${(await clusterLogs(() => true, 40)).join('\n')}` };
  };

  it('with no flags the workers run the default backbone on ONNX Runtime, and say so in their log and the job record', { timeout: 240_000 }, async () => {
    const out = join(work, 'default-model');
    const r = await graft(['train', data, '--out', out, '--workers', '2', '--no-bundle', '--epochs', '20']);
    assert.equal(r.code, 0, r.output);
    assert.match(r.output, /backbone +mobilenet_v2_100 \(1280-d, fingerprint [0-9a-f]{16}\), run on onnxruntime\/cpu/);
    // Either worker may have taken every task: the backbone is loaded by whichever ran one.
    const logs = await workerLogs();
    assert.match(logs, /backbones on onnxruntime \(cpu provider, 1 thread\); TensorFlow\.js backend wasm/);
    assert.match(logs, /backbone loaded, running on onnxruntime \(cpu provider\)/);
    // Converted and checked once per machine: the cache holds the file and its verdict.
    assert.ok((await stat(join(env.GRAFT_CACHE_DIR!, 'onnx'))).isDirectory());
  });

  it(
    'the same photos with --backend wasm: the same fingerprint, every vector from the cache (the runtimes agree within 1e-4)',
    { timeout: 240_000 },
    async () => {
      const r = await graft(['train', data, '--out', join(work, 'wasm-model'), '--workers', '2', '--no-bundle', '--epochs', '20', '--backend', 'wasm']);
      assert.equal(r.code, 0, r.output);
      assert.match(r.output, /images +24: 24 cached, 0 extracted, 0 failed/);
      assert.match(await workerLogs(), /backbones on wasm; TensorFlow\.js backend wasm/);
    },
  );

  it('an ONNX model written as PyTorch writes one (NCHW, ImageNet mean and std, a classifier on top) trains and classifies', { timeout: 240_000 }, async () => {
    const out = join(work, 'onnx-model');
    const r = await graft(['train', data, '--backbone', TORCHVISION_STYLE, '--preprocess', 'imagenet', '--out', out, '--workers', '2', '--epochs', '60']);
    assert.equal(r.code, 0, r.output);
    assert.match(r.output, /backbone +custom \(16-d, fingerprint [0-9a-f]{16}\), run on onnxruntime\/cpu/);
    assert.match(r.output, /browser bundle not written: the backbone is an ONNX model/, 'said, not fatal');
    const top1 = Number(/test accuracy: top-1 ([\d.]+)%/.exec(r.output)?.[1]);
    assert.ok(top1 >= 60, `a random-weight CNN still separates these shapes: ${top1}%`);
    const manifest = JSON.parse(await readFile(join(out, 'graft.json'), 'utf8'));
    assert.equal(manifest.backbone.format, 'onnx');
    assert.equal(manifest.backbone.bottleneck, '/avgpool/GlobalAveragePool_output_0');
    const c = await runGraft(['classify', out, join(data, 'square', 'square_000.jpg'), '--json'], env);
    assert.equal(c.code, 0, c.output);
    assert.ok(JSON.parse(c.output.trim().split('\n').at(-1)!)[0].predictions.length > 0);
  });
});
