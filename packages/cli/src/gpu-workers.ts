import { execFileSync } from 'node:child_process';
import cluster, { type Worker as ClusterWorker } from 'node:cluster';
import { hostname } from 'node:os';
import { Registry } from 'prom-client';
import { UsageError } from './args.js';
import { nodeMetrics, supervisorMetrics } from './gpu-metrics.js';
import { serveMetrics } from './metrics-server.js';
import type { Log } from './logger.js';
import { untilSignal } from './signals.js';

/*
 * One worker process per GPU, under one supervisor: one process drives one GPU well, and a
 * container given every GPU of its node (compose `count: all`) must not leave all but the first
 * idle. Each child is pinned to its GPU (gpuPinning: ONNX Runtime's CUDA device id, or
 * CUDA_VISIBLE_DEVICES for tfjs-node-gpu and GPUs named by UUID); the supervisor restarts a child
 * that dies, forwards SIGTERM (each child drains its task), and serves the children's metrics
 * (each labelled with its gpu, gpu-metrics.ts) on one port, so Prometheus scrapes one target per node.
 */

/** Marks a child started by the supervisor, holding its GPU (its metrics go to the supervisor, not a port). */
const CHILD_ENV = 'GRAFT_GPU_CHILD';
/** A child that dies is started again after this, doubling up to a minute while it keeps dying. */
const RESTART_MS = 1000;

/**
 * The GPUs `--gpus` names: a list (`0,1` or UUIDs), or `all`: those in NVIDIA_VISIBLE_DEVICES when
 * it lists them, else those nvidia-smi reports.
 * @throws UsageError when none is found.
 */
export function resolveGpus(spec: string, env: NodeJS.ProcessEnv = process.env, listGpus: () => string[] = nvidiaSmiGpus): string[] {
  const split = (s: string) =>
    s
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean);
  let gpus: string[];
  if (spec !== 'all') gpus = split(spec);
  else {
    const visible = env.NVIDIA_VISIBLE_DEVICES?.trim();
    gpus = visible && !['all', 'none', 'void'].includes(visible) ? split(visible) : listGpus();
  }
  if (gpus.length === 0) throw new UsageError(`--gpus ${spec}: no GPU found (nvidia-smi lists none and NVIDIA_VISIBLE_DEVICES names none)`);
  if (new Set(gpus).size !== gpus.length) throw new UsageError(`--gpus ${spec}: a GPU is named twice`);
  return gpus;
}

function nvidiaSmiGpus(): string[] {
  try {
    return execFileSync('nvidia-smi', ['--query-gpu=index', '--format=csv,noheader'], { encoding: 'utf8', timeout: 10_000 })
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean);
  } catch {
    return []; // no nvidia-smi: resolveGpus says no GPU was found
  }
}

/** Whether this process is a child of the GPU supervisor. */
export function isGpuChild(): boolean {
  return cluster.isWorker && Boolean(process.env[CHILD_ENV]);
}

/** The GPU a supervisor's child drives (its metrics' gpu label). */
export function childGpu(): string {
  return process.env[CHILD_ENV] ?? '';
}

/**
 * How a child drives its GPU: a GPU named by number is ONNX Runtime's CUDA device of that number
 * (CUDA counting in nvidia-smi's PCI bus order); one named by UUID, or any GPU under tfjs-node-gpu
 * (TensorFlow takes every GPU it sees), is the only one the process is shown.
 * @returns the environment to set before any CUDA library loads, and the device id for ONNX Runtime.
 */
export function gpuPinning(gpu: string, backend: string): { env: Record<string, string>; deviceId: number } {
  if (/^\d+$/.test(gpu) && backend !== 'tfjs-node-gpu') return { env: { CUDA_DEVICE_ORDER: 'PCI_BUS_ID' }, deviceId: Number(gpu) };
  return { env: { CUDA_DEVICE_ORDER: 'PCI_BUS_ID', CUDA_VISIBLE_DEVICES: gpu }, deviceId: 0 };
}

/** argv without the named options (`--name value` and `--name=value`). */
export function withoutOptions(argv: readonly string[], names: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const name = names.find((n) => a === `--${n}` || a.startsWith(`--${n}=`));
    if (!name) out.push(a);
    else if (a === `--${name}`) i++; // and its value
  }
  return out;
}

/**
 * Runs one `graft worker` per GPU until SIGINT/SIGTERM, then stops them all (each drains).
 * @param args the worker's own arguments, without --gpus or --metrics-port.
 */
export async function superviseGpuWorkers(
  gpus: string[],
  args: string[],
  o: { workerId?: string; metricsPort?: number; metricsAddress?: string; log: Log },
): Promise<number> {
  const log = o.log.child({ component: 'gpu-supervisor' });
  const base = o.workerId ?? `${hostname()}-${process.pid}`;
  const byGpu = new Map<string, ClusterWorker>();
  const restarts = new Map<string, number>();
  let stopping = false;
  const alive = () => [...byGpu.values()].filter((c) => !c.isDead()).length;
  const own = new Registry();
  const metrics = supervisorMetrics(own, alive);
  for (const gpu of gpus) metrics.restarts.inc({ gpu }, 0);

  const start = (gpu: string, i: number) => {
    cluster.setupPrimary({ exec: process.argv[1], args: ['worker', ...args, '--worker-id', `${base}-gpu${i}`], silent: false });
    const child = cluster.fork({ [CHILD_ENV]: gpu, GRAFT_METRICS_PORT: '' });
    byGpu.set(gpu, child);
    const pid = child.process.pid;
    log.info({ gpu, pid, workerId: `${base}-gpu${i}` }, `worker for GPU ${gpu} started`);
    child.on('exit', (code, signal) => {
      if (stopping) return;
      const delay = Math.min(60_000, RESTART_MS * 2 ** (restarts.get(gpu) ?? 0));
      restarts.set(gpu, (restarts.get(gpu) ?? 0) + 1);
      metrics.restarts.inc({ gpu });
      log.error({ gpu, pid, code, signal, restartInMs: delay }, `worker for GPU ${gpu} exited: starting it again`);
      setTimeout(() => !stopping && start(gpu, i), delay).unref();
    });
    // A child that has run a while is healthy again: its next crash restarts it at once.
    setTimeout(() => restarts.delete(gpu), 5 * 60_000).unref();
  };
  gpus.forEach(start);

  const server =
    o.metricsPort !== undefined
      ? await serveMetrics(own, o.metricsPort, { ready: () => alive() === gpus.length, healthy: () => alive() > 0 }, o.metricsAddress, () =>
          nodeMetrics(byGpu, own, metrics),
        )
      : undefined;

  const signal = await untilSignal();
  stopping = true;
  log.info({ signal, workers: alive() }, 'stopping the GPU workers (each finishes or hands back its task)');
  const exits = [...byGpu.values()].filter((c) => !c.isDead()).map((c) => new Promise<void>((resolve) => c.once('exit', () => resolve())));
  for (const c of byGpu.values()) if (!c.isDead()) c.process.kill('SIGTERM');
  await Promise.all(exits);
  server?.close();
  log.info('GPU workers stopped');
  return 0;
}
