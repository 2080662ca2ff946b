import { parentPort, workerData } from 'node:worker_threads';
import { initBackend, type BackendName } from '@graft/vision';
import { rowsOf } from '../thread-pool.js';
import { trainFold, type FoldThreadData } from './folds.js';

/* One audit thread: gets the vectors once (shared memory), then trains the folds it is sent. */

const d = workerData as FoldThreadData;
await initBackend({ preferred: d.backend as BackendName });
const rows = rowsOf(d.rows, d.dim);

parentPort!.on('message', async (k: number) => {
  try {
    parentPort!.postMessage({ ok: true, result: await trainFold(rows, d.labels, d.fold, k, d.dim, d.classes, d.options) });
  } catch (err) {
    parentPort!.postMessage({ ok: false, error: (err as Error).message });
  }
});
