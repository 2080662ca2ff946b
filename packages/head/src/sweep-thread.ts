import { parentPort, workerData } from 'node:worker_threads';
import { initBackend, type BackendName } from '@graft/vision';
import { rowsOf } from './thread-pool.js';
import { trainSweepHead, type SweepConfig, type SweepThreadData } from './sweep.js';

/* One sweep thread: gets the vectors once (shared memory), then trains the heads it is sent. */

const d = workerData as SweepThreadData;
await initBackend({ preferred: d.backend as BackendName });
const data = {
  dim: d.dim,
  classes: d.classes,
  train: { x: rowsOf(d.train.x, d.dim), y: d.train.y },
  validation: { x: rowsOf(d.validation.x, d.dim), y: d.validation.y },
};

parentPort!.on('message', async (c: SweepConfig) => {
  try {
    parentPort!.postMessage({ ok: true, result: await trainSweepHead(data, c) });
  } catch (err) {
    parentPort!.postMessage({ ok: false, error: (err as Error).message });
  }
});
