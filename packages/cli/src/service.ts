import { resolve } from 'node:path';
import { Registry } from 'prom-client';
import { OPEN_RETRY, describeBus, isBusNotReady, openBus, type Bus, type BusOptions, type TopologyOptions } from '@graft/protocol';
import { initBackend, type BackendChoice, type BackendName } from '@graft/vision';
import { UsageError, busOptions, int, str, type Values } from './args.js';
import { createLogger, type Log } from './logger.js';
import { untilSignal } from './signals.js';
import { childGpu, gpuPinning, isGpuChild } from './gpu-workers.js';
import { reportToSupervisor } from './gpu-metrics.js';
import { DEFAULT_METRICS_ADDRESS, serveMetrics } from './metrics-server.js';

/* The lifecycle of graft's processes: backend, bus, signals, metrics, orderly shutdown. */

/** What a long-running process exposes to the CLI: its lifecycle. */
export interface Service {
  readonly state: string;
  readonly closed: Promise<void>;
  close(): Promise<void>;
}

/** Downloaded backbones: --cache-dir, else $GRAFT_CACHE_DIR, else vision's default (~/.cache/graft/models). */
export function cacheDir(v: Values): string | undefined {
  return str(v, 'cache-dir') ?? process.env.GRAFT_CACHE_DIR;
}

/** --cache-dir for a local cluster's processes (they read $GRAFT_CACHE_DIR). */
export function cacheEnv(v: Values): NodeJS.ProcessEnv {
  const dir = cacheDir(v);
  return dir ? { GRAFT_CACHE_DIR: resolve(dir) } : {};
}

/** Runs fn on a bus opened for it, and closes the bus afterwards. */
export async function withBus<T>(opts: BusOptions, fn: (bus: Bus) => Promise<T>): Promise<T> {
  const bus = await openBus(opts);
  try {
    return await fn(bus);
  } finally {
    await bus.close();
  }
}

/** What a backend choice says in one line: where backbones run, and TF.js's backend. */
export function describeBackend(c: BackendChoice): string {
  const backbones = c.onnx
    ? `onnxruntime (${c.onnx.provider} provider${c.onnx.provider === 'cuda' ? `, device ${c.onnx.deviceId}` : `, ${c.onnx.threads} thread${c.onnx.threads === 1 ? '' : 's'}`})`
    : c.name;
  return `backbones on ${backbones}; TensorFlow.js backend ${c.tfjs}`;
}

/** Where backbones run here, as results and job records say it (`onnxruntime/cpu`, `wasm`...). */
export function runtimeOf(c: BackendChoice): string {
  return c.onnx ? `onnxruntime/${c.onnx.provider}` : c.name;
}

/**
 * Picks the backends (--backend, $GRAFT_BACKEND or the best available; --threads or $GRAFT_THREADS
 * ONNX Runtime threads) and logs the choice. A `worker --gpus` child is pinned to its GPU first
 * (gpuPinning), before any CUDA library loads.
 */
export async function backendFor(v: Values, log: Log): Promise<BackendChoice> {
  const preferred = (str(v, 'backend') ?? process.env.GRAFT_BACKEND ?? 'auto') as BackendName | 'auto';
  const threads = int(v, 'threads', 1) ?? (process.env.GRAFT_THREADS ? Number(process.env.GRAFT_THREADS) : undefined);
  const pin = isGpuChild() ? gpuPinning(childGpu(), preferred) : undefined;
  if (pin) Object.assign(process.env, pin.env);
  try {
    return await initBackend({
      preferred,
      threads,
      gpu: pin ? String(pin.deviceId) : undefined,
      log: (c) =>
        log.info(
          {
            backend: c.name,
            tfjs: c.tfjs,
            onnx: c.onnx,
            skipped: c.skipped,
            ...(pin ? { gpu: childGpu(), cudaDevice: pin.deviceId, pinnedBy: pin.env.CUDA_VISIBLE_DEVICES ? 'CUDA_VISIBLE_DEVICES' : 'device id' } : {}),
          },
          describeBackend(c),
        ),
    });
  } catch (err) {
    throw new UsageError((err as Error).message, { cause: err });
  }
}

/** The address /metrics listens on: --metrics-address, else $GRAFT_METRICS_ADDRESS, else 127.0.0.1. */
export function metricsAddress(v: Values): string {
  return str(v, 'metrics-address') ?? (process.env.GRAFT_METRICS_ADDRESS || DEFAULT_METRICS_ADDRESS);
}

/** Where a long-running process serves /metrics: --metrics-port, else $GRAFT_METRICS_PORT, else nowhere. */
export function metricsPort(v: Values): number | undefined {
  return int(v, 'metrics-port') ?? (process.env.GRAFT_METRICS_PORT ? Number(process.env.GRAFT_METRICS_PORT) : undefined);
}

/**
 * Opens the bus, waiting rather than exiting while it is not ready: a worker only opens the
 * topology (least privilege), so it waits for graft init or the coordinator to create it; and a
 * JetStream cluster answers "temporarily unavailable" until its servers have elected a leader.
 * @returns undefined when `stop` settles first (a signal while waiting).
 */
export async function openWithRetry(opts: BusOptions, topology: TopologyOptions, log: Log, stop?: Promise<unknown>): Promise<Bus | undefined> {
  let stopped = false;
  void stop?.then(() => (stopped = true));
  for (let attempt = 1; !stopped; attempt++) {
    try {
      return await openBus(opts, topology);
    } catch (err) {
      if (!isBusNotReady(err, topology.create !== false) || attempt > OPEN_RETRY.attempts) throw err;
      if (attempt === 1 || attempt % 10 === 0) log.warn(`${(err as Error).message} (waiting for it: trying again every ${OPEN_RETRY.delayMs / 1000} s)`);
      await Promise.race([new Promise((r) => setTimeout(r, OPEN_RETRY.delayMs)), stop]);
    }
  }
  return undefined;
}

/**
 * Runs a worker or coordinator until SIGINT/SIGTERM (or until it stops by itself): picks the
 * backend, connects, serves /metrics when asked, then closes in order: service, metrics, bus.
 */
export async function runService(
  v: Values,
  role: string,
  start: (bus: Bus, log: Log, registry: Registry, backend: string) => Promise<Service>,
  topology: TopologyOptions = {},
): Promise<number> {
  const log = createLogger();
  // Handlers first: `docker compose stop` while the broker is not up yet stops at once, not after the grace period.
  const signal = untilSignal();
  const backend = await backendFor(v, log);
  const opts = busOptions(v, `graft-${role}-${process.pid}`);
  log.info({ bus: describeBus(opts) }, 'connecting');
  const bus = await openWithRetry(opts, topology, log, signal);
  if (!bus) {
    log.info(`${role} stopped before it connected`);
    return 0;
  }
  const registry = new Registry();
  if (isGpuChild()) reportToSupervisor(registry, childGpu());
  const service = await start(bus, log, registry, runtimeOf(backend));
  const port = metricsPort(v);
  const server =
    port !== undefined ? await serveMetrics(registry, port, { ready: () => service.state === 'running' && bus.isConnected() }, metricsAddress(v)) : undefined;
  await Promise.race([signal, service.closed]);
  await service.close();
  server?.close();
  await bus.close();
  log.info(`${role} exited`);
  return 0;
}
