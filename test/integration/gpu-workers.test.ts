import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { generateSampleSet, gpuPinning, publishDataset, resolveGpus, withoutOptions } from '@graft/cli';
import { JobState, freePort } from '@graft/protocol/testing';
import { TestCluster, countsOf } from '../helpers/cluster.js';
import { waitFor } from '../helpers/process.js';

/** The value of one environment variable of a running process, read from /proc. */
async function envOf(pid: number, name: string): Promise<string | undefined> {
  const env = (await readFile(`/proc/${pid}/environ`, 'utf8')).split('\0');
  return env.find((e) => e.startsWith(`${name}=`))?.slice(name.length + 1);
}

/** GPU -> pid of each child the supervisor says it started, latest last. */
function children(output: string): [string, number][] {
  return [...output.matchAll(/"gpu":"([^"]+)","pid":(\d+)/g)].map((m) => [m[1], Number(m[2])]);
}

describe('worker --gpus - one process per GPU', () => {
  it('resolves the GPUs to use from the flag, NVIDIA_VISIBLE_DEVICES or nvidia-smi', () => {
    assert.deepEqual(
      resolveGpus('0,2', {}, () => []),
      ['0', '2'],
    );
    assert.deepEqual(
      resolveGpus('all', { NVIDIA_VISIBLE_DEVICES: '1,3' }, () => ['0']),
      ['1', '3'],
    );
    assert.deepEqual(
      resolveGpus('all', { NVIDIA_VISIBLE_DEVICES: 'all' }, () => ['0', '1', '2']),
      ['0', '1', '2'],
    );
    assert.throws(() => resolveGpus('all', {}, () => []), /no GPU found/);
    assert.throws(() => resolveGpus('0,0', {}, () => []), /named twice/);
    assert.deepEqual(withoutOptions(['--gpus', 'all', '--nats', 'u', '--metrics-port=9', '--batch-size', '8'], ['gpus', 'metrics-port']), [
      '--nats',
      'u',
      '--batch-size',
      '8',
    ]);
  });

  it('pins a child to its GPU: ONNX Runtime by CUDA device id (nvidia-smi numbering), tfjs-node-gpu and UUIDs by what CUDA is shown', () => {
    assert.deepEqual(gpuPinning('2', 'auto'), { env: { CUDA_DEVICE_ORDER: 'PCI_BUS_ID' }, deviceId: 2 });
    assert.deepEqual(gpuPinning('1', 'onnxruntime'), { env: { CUDA_DEVICE_ORDER: 'PCI_BUS_ID' }, deviceId: 1 });
    assert.deepEqual(gpuPinning('1', 'tfjs-node-gpu'), { env: { CUDA_DEVICE_ORDER: 'PCI_BUS_ID', CUDA_VISIBLE_DEVICES: '1' }, deviceId: 0 });
    assert.deepEqual(gpuPinning('GPU-8f0e', 'auto'), { env: { CUDA_DEVICE_ORDER: 'PCI_BUS_ID', CUDA_VISIBLE_DEVICES: 'GPU-8f0e' }, deviceId: 0 });
  });

  it(
    'starts a worker per GPU pinned to its own, labels their metrics by GPU, restarts one that dies (counted), and stops them all on SIGTERM',
    { timeout: 180_000 },
    async () => {
      const c = await new TestCluster(['--task-size', '4']).start({ workers: 0 });
      try {
        const port = await freePort();
        const sup = c.startWorker(['--gpus', '0,1', '--metrics-port', String(port)]);
        const started = await waitFor(
          async () => (children(sup.output()).length >= 2 ? children(sup.output()) : undefined),
          60_000,
          `two GPU workers\n${c.logs()}`,
        );
        const pinned = (gpu: string, pid: number) => new RegExp(`"pid":${pid},.*"gpu":"${gpu}","cudaDevice":${gpu},"pinnedBy":"device id"`);
        for (const [gpu, pid] of started) {
          assert.equal(await envOf(pid, 'GRAFT_GPU_CHILD'), gpu);
          await waitFor(
            async () => pinned(gpu, pid).test(sup.output()),
            30_000,
            `the worker for GPU ${gpu} to say it runs on CUDA device ${gpu}\n${sup.output().slice(-2000)}`,
          );
        }

        const model = await c.tinyModel();
        const data = await generateSampleSet(join(c.work, 'shapes'), 8, 41, ['circle', 'square']);
        const p = await publishDataset(c.bus, data, { progress: false, backbone: model, training: { epochs: 3 } });
        const s = await c.waitForJob(p.jobId, 90_000);
        assert.equal(s.state, JobState.JOB_STATE_DONE, `${s.error}\n${c.logs()}`);
        assert.deepEqual(countsOf(s), { total: 16, cached: 0, extracted: 16, failed: 0 });
        const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        const perGpu = [...text.matchAll(/^graft_images_extracted_total\{gpu="(\d)"\} (\d+)$/gm)].map((m) => [m[1], Number(m[2])] as const);
        assert.deepEqual(perGpu.map(([g]) => g).sort(), ['0', '1'], "one target: each GPU's worker as its own series");
        assert.equal(
          perGpu.reduce((n, [, v]) => n + v, 0),
          16,
          'their counts add up to the job',
        );
        const info = [...text.matchAll(/^graft_worker_info\{(.*)\} (\d+)$/gm)];
        assert.ok(info.length >= 1, 'the workers that loaded the backbone say so');
        for (const [, labels, v] of info) assert.ok(/gpu="\d"/.test(labels) && v === '1', `one info series per GPU worker, never a sum: ${labels} ${v}`);
        assert.match(text, /^graft_gpu_workers_live 2$/m);
        assert.match(text, /^graft_gpu_worker_restarts_total\{gpu="0"\} 0$/m, 'restarts counted from 0 for each GPU');
        assert.equal((await fetch(`http://127.0.0.1:${port}/readyz`)).status, 200);
        assert.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);

        const [gpu0, pid0] = started[0];
        process.kill(pid0, 'SIGKILL');
        const again = await waitFor(
          async () => children(sup.output()).find(([g, pid]) => g === gpu0 && pid !== pid0),
          30_000,
          `the worker for GPU ${gpu0} to be started again\n${sup.output().slice(-3000)}`,
        );
        await waitFor(async () => pinned(gpu0, again[1]).test(sup.output()), 30_000, `the restarted worker for GPU ${gpu0} to be pinned to it`);
        const after = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        assert.match(after, new RegExp(`^graft_gpu_worker_restarts_total\\{gpu="${gpu0}"\\} 1$`, 'm'), 'the restart is counted (GraftGpuWorkersRestarting)');

        assert.equal(await sup.stop(30_000), 0, 'SIGTERM stops the supervisor cleanly');
        for (const pid of [again[1], started[1][1]]) assert.throws(() => process.kill(pid, 0), 'no worker outlives its supervisor');
      } finally {
        await c.stop();
      }
    },
  );
});
