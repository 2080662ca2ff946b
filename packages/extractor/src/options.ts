import { TASK_MAX_DELIVER } from '@graft/protocol';
import { resolveDecodeLimits, type DecodeLimits } from '@graft/vision';

/** Extractor settings as users give them; all optional. */
export interface WorkerOptions {
  /** Shown in logs and results. Default `<hostname>-<pid>`. */
  workerId?: string;
  /** Most images per backbone call within a task. Default by backend: 32 on a GPU (onnxruntime/cuda, tfjs-node-gpu), 16 on tfjs-node, 8 otherwise. */
  inferBatchSize?: number;
  /** A task still running after this long (fetch, decode and inference) fails its remaining images with TIMEOUT, ms. Default 300000. */
  taskTimeoutMs?: number;
  /** How long one pull waits for a task, ms. Default 2000. */
  pullExpiresMs?: number;
  /** Wait between looks for work when every queue is empty, ms. Default 1000. */
  idleWaitMs?: number;
  /** On close, how long to let the task in hand finish before it is handed back, ms. Default 20000. */
  graceMs?: number;
  /** Deliveries after which a task is answered with errors instead of retried, for a queue whose MaxDeliver is unknown. Default TASK_MAX_DELIVER (the retry policy's). */
  maxDeliver?: number;
  /** Images decoded at once (libuv's thread pool; the CLI sets UV_THREADPOOL_SIZE), for the logs. Default 4 (libuv's). */
  decodeThreads?: number;
  /** Decoding limits that protect the worker from hostile images. */
  limits?: DecodeLimits;
  /** Read photos' prepared inputs (decoded at the input size once) and store those it makes. Default true. */
  preparedInputs?: boolean;
  /** Model cache folder; backbones converted to ONNX are cached in its onnx/ folder. Default ~/.cache/graft/models. */
  cacheDir?: string;
}

export type ResolvedWorkerOptions = Required<Omit<WorkerOptions, 'cacheDir'>> & { limits: Required<DecodeLimits>; cacheDir?: string };

/** Fills defaults. @throws RangeError naming the bad field. */
export function resolveWorkerOptions(o: WorkerOptions = {}, defaultId: string, backend = 'wasm'): ResolvedWorkerOptions {
  const r = {
    workerId: o.workerId ?? defaultId,
    // A GPU wants big batches; on CPU cores a batch costs the same per image past a few.
    inferBatchSize: o.inferBatchSize ?? (backend === 'tfjs-node-gpu' || backend === 'onnxruntime/cuda' ? 32 : backend === 'tfjs-node' ? 16 : 8),
    taskTimeoutMs: o.taskTimeoutMs ?? 300_000,
    pullExpiresMs: o.pullExpiresMs ?? 2000,
    idleWaitMs: o.idleWaitMs ?? 1000,
    graceMs: o.graceMs ?? 20_000,
    maxDeliver: o.maxDeliver ?? TASK_MAX_DELIVER,
    decodeThreads: o.decodeThreads ?? 4,
    limits: resolveDecodeLimits(o.limits),
    preparedInputs: o.preparedInputs ?? true,
    cacheDir: o.cacheDir,
  };
  for (const k of ['inferBatchSize', 'taskTimeoutMs', 'pullExpiresMs', 'idleWaitMs', 'maxDeliver', 'decodeThreads'] as const) {
    if (!Number.isInteger(r[k]) || r[k] < 1) throw new RangeError(`${k} must be a positive integer, got ${r[k]}`);
  }
  if (!Number.isInteger(r.graceMs) || r.graceMs < 0) throw new RangeError(`graceMs must be a non-negative integer, got ${r.graceMs}`);
  return r;
}
