import { WORKER_STREAMS } from '@graft/protocol';
import { join, resolve } from 'node:path';
import { Gauge, Registry } from 'prom-client';
import { startCoordinator } from '@graft/coordinator';
import { startWorker } from '@graft/extractor';
import { MAX_BYTES_HELP, NATS_HELP, NATS_OPTIONS, busOptions, graftHome, int, parse, storeCaps, str } from '../args.js';
import { defaultWorkers, startLocalCluster } from '../cluster.js';
import { isGpuChild, resolveGpus, superviseGpuWorkers, withoutOptions } from '../gpu-workers.js';
import { createLogger } from '../logger.js';
import { serveMetrics } from '../metrics-server.js';
import { cacheDir, cacheEnv, metricsAddress, metricsPort, openWithRetry, runService } from '../service.js';
import { untilSignal } from '../signals.js';
import { BACKEND_HELP, THREADS_HELP, localWorkers } from './command.js';
import type { Command } from './command.js';

/* Commands that run the cluster's processes: graft up, worker, coordinator, init. */

const up: Command = {
  summary: 'run a whole cluster on this machine: nats-server, a coordinator and N workers',
  usage: `graft up [--workers N] [--port P] [--data DIR] [--nats URL]

Starts nats-server with JetStream (data in --data, default $GRAFT_HOME/cluster or ~/.graft/cluster)
unless --nats names a running server, one coordinator and N extractor workers. Ctrl-C stops
everything cleanly.

  --workers N         extractor processes (default: one per two cores, each with two ONNX Runtime threads = ${defaultWorkers()};
                      one per core with a TF.js --backend)
  --port P            client port of the started nats-server (default 4222)
  --metrics-port P    serve this process's /metrics on P, the coordinator's on P+1, worker i's on P+1+i
  --metrics-address A   the address /metrics listens on (default $GRAFT_METRICS_ADDRESS, else 127.0.0.1)
  --data DIR          data folder
  --cache-dir DIR     the model disk cache of the coordinator and workers (default $GRAFT_CACHE_DIR,
                      else ~/.cache/graft/models)
${BACKEND_HELP}
${THREADS_HELP}
${NATS_HELP}`,
  options: {
    ...NATS_OPTIONS,
    workers: { type: 'string' },
    port: { type: 'string' },
    data: { type: 'string' },
    backend: { type: 'string' },
    threads: { type: 'string' },
    'cache-dir': { type: 'string' },
    'metrics-port': { type: 'string' },
    'metrics-address': { type: 'string' },
  },
  async run(argv) {
    const { values: v } = parse(argv, this.options, false);
    const dataDir = resolve(str(v, 'data') ?? join(graftHome(), 'cluster'));
    const metricsPort = int(v, 'metrics-port', 1);
    const cluster = await startLocalCluster({
      dataDir,
      command: 'graft up',
      natsUrl: str(v, 'nats'),
      port: int(v, 'port', 1) ?? 4222,
      ...localWorkers(v),
      output: 'inherit',
      metricsBasePort: metricsPort !== undefined ? metricsPort + 1 : undefined,
      env: cacheEnv(v),
    });
    let server: Awaited<ReturnType<typeof serveMetrics>> | undefined;
    if (metricsPort !== undefined) {
      const registry = new Registry();
      new Gauge({
        name: 'graft_cluster_processes',
        help: 'Processes graft up is running, by role',
        labelNames: ['role'] as const,
        registers: [registry],
        collect() {
          const alive = cluster.children.filter((c) => c.exitCode === null && c.signalCode === null).length;
          this.set({ role: 'coordinator' }, cluster.children[0].exitCode === null ? 1 : 0);
          this.set({ role: 'worker' }, Math.max(0, alive - (cluster.children[0].exitCode === null ? 1 : 0)));
        },
      });
      server = await serveMetrics(registry, metricsPort, { ready: () => true }, metricsAddress(v));
    }
    process.stderr.write(`graft cluster up: NATS at ${cluster.url}, data in ${dataDir}. Publish with: graft publish DIR --nats ${cluster.url}\n`);
    await untilSignal();
    process.stderr.write('stopping the cluster...\n');
    await cluster.stop();
    server?.close();
    return 0;
  },
};

const worker: Command = {
  summary: 'run one extractor worker',
  usage: `graft worker [--nats URL] [--backend NAME] [--batch-size N] [--metrics-port P]

Pulls extraction tasks for every backbone with queued work, runs the backbone and publishes
vectors. SIGTERM drains: the task in hand finishes (or is handed back), then exit 0.

  --worker-id ID      name in logs and results (default host-pid)
  --batch-size N      most images per backbone call (default 32 on GPU, 16 tfjs-node, 8 on CPU cores; fewer when a call
                      would outlast the task lease)
  --max-image-bytes N   larger images fail with TOO_LARGE (default 52428800)
  --max-image-pixels N  images with more pixels fail with TOO_LARGE, before decoding (default 100000000)
  --task-timeout MS   a task still running after this (fetch, decode, inference; model loading not counted)
                      fails its remaining images with TIMEOUT (default 300000)
  --no-prepared-inputs  always fetch and decode originals: read no prepared inputs (photos decoded at the
                      input size once, by the first worker that needed them) and store none
  --metrics-port P    serve /metrics, /healthz, /readyz on P (default $GRAFT_METRICS_PORT, off if unset)
  --metrics-address A   the address /metrics listens on (default $GRAFT_METRICS_ADDRESS, else 127.0.0.1)
  --gpus all|LIST     one worker process per GPU (all: NVIDIA_VISIBLE_DEVICES's list, else nvidia-smi's;
                      or e.g. 0,1), each pinned to its own (ONNX Runtime's CUDA device id; CUDA_VISIBLE_DEVICES
                      under tfjs-node-gpu), restarted if it dies; their metrics are served summed on --metrics-port
  --cache-dir DIR     model cache: backbones converted to ONNX are kept in its onnx/ folder (default
                      $GRAFT_CACHE_DIR, else ~/.cache/graft/models)

Backbones come from the cluster's model store, put there by the coordinator: a worker
downloads nothing and reads no model path a manifest names. A TF.js backbone is converted to
ONNX and checked against TF.js before its first use (kept on TF.js, with the reason logged,
when it cannot be converted or differs).
${BACKEND_HELP}
${THREADS_HELP}
${NATS_HELP}`,
  options: {
    ...NATS_OPTIONS,
    backend: { type: 'string' },
    threads: { type: 'string' },
    'cache-dir': { type: 'string' },
    'batch-size': { type: 'string' },
    'metrics-port': { type: 'string' },
    'metrics-address': { type: 'string' },
    'worker-id': { type: 'string' },
    'max-image-bytes': { type: 'string' },
    'max-image-pixels': { type: 'string' },
    'task-timeout': { type: 'string' },
    'no-prepared-inputs': { type: 'boolean' },
    gpus: { type: 'string' },
  },
  async run(argv) {
    const { values: v } = parse(argv, this.options, false);
    const gpus = str(v, 'gpus');
    if (gpus && !isGpuChild()) {
      return superviseGpuWorkers(resolveGpus(gpus), withoutOptions(argv, ['gpus', 'metrics-port', 'metrics-address', 'worker-id']), {
        workerId: str(v, 'worker-id'),
        metricsPort: metricsPort(v),
        metricsAddress: metricsAddress(v),
        log: createLogger(),
      });
    }
    return runService(
      v,
      'worker',
      (bus, log, registry, backend) =>
        startWorker(
          bus,
          {
            workerId: str(v, 'worker-id'),
            inferBatchSize: int(v, 'batch-size', 1),
            limits: { maxBytes: int(v, 'max-image-bytes', 1), maxPixels: int(v, 'max-image-pixels', 1) },
            taskTimeoutMs: int(v, 'task-timeout', 1),
            preparedInputs: !v['no-prepared-inputs'],
            // bin/graft.js sizes libuv's pool (sharp decodes on it) before anything starts.
            decodeThreads: Number(process.env.UV_THREADPOOL_SIZE ?? 4),
            cacheDir: cacheDir(v),
          },
          { logger: log.child({ backend }), registry, backend },
        ),
      { create: false, uses: WORKER_STREAMS },
    );
  },
};

const coordinator: Command = {
  summary: 'run a coordinator (start several: one leads, the others stand by)',
  usage: `graft coordinator [--nats URL] [--metrics-port P]

Consumes manifests, enqueues cache misses, collects vectors into the cache, trains and
evaluates heads, and stores models. Unfinished jobs resume on start. Start as many as you
like: one leads (a lease in NATS), the others stand by and take over when it stops.

  --task-size N         images per extraction task (default 16)
  --ack-wait MS         how long a worker holds a task without renewing its lease (default 30000)
  --max-deliver N       deliveries of a task before its images are reported failed (default 5)
  --max-queued-tasks N  task queue bound when creating it; publishing waits when full (default 100000)
  --reconcile-interval MS  how often extracting jobs are checked for images whose task was taken and
                      never answered; they are enqueued again (default 30000)
  --lease-ttl MS        one coordinator leads; others stand by and take over this long after it stops (default 10000)
  --allow-model-files   let manifests name file:// backbones on this machine (off: anyone who can publish
                        could make the coordinator read any file; graft up and graft train turn it on)
  --allow-private-model-hosts  let manifests name backbone URLs on this machine or a private network
                      (off: a manifest could probe the inside network, a metrics port, a cloud metadata service)
  --max-model-bytes N   largest backbone a manifest may name (default 1073741824)
  --cache-dir DIR       downloaded backbones (default $GRAFT_CACHE_DIR or ~/.cache/graft/models)
  --replicas N          copies of each stream and bucket it creates (a JetStream cluster; see graft init)
${MAX_BYTES_HELP}
  --coordinator-id ID   name in the lease and logs (default host-pid)
  --metrics-port P      serve /metrics, /healthz, /readyz on P (default $GRAFT_METRICS_PORT, off if unset)
  --metrics-address A   the address /metrics listens on (default $GRAFT_METRICS_ADDRESS, else 127.0.0.1)
${BACKEND_HELP}
${NATS_HELP}`,
  options: {
    ...NATS_OPTIONS,
    backend: { type: 'string' },
    'task-size': { type: 'string' },
    'ack-wait': { type: 'string' },
    'max-deliver': { type: 'string' },
    'max-queued-tasks': { type: 'string' },
    'reconcile-interval': { type: 'string' },
    'metrics-port': { type: 'string' },
    'metrics-address': { type: 'string' },
    'cache-dir': { type: 'string' },
    'lease-ttl': { type: 'string' },
    'coordinator-id': { type: 'string' },
    'allow-model-files': { type: 'boolean' },
    'allow-private-model-hosts': { type: 'boolean' },
    'max-model-bytes': { type: 'string' },
    replicas: { type: 'string' },
    'max-bytes': { type: 'string' },
  },
  async run(argv) {
    const { values: v } = parse(argv, this.options, false);
    const maxBytes = storeCaps(v);
    return runService(
      v,
      'coordinator',
      (bus, log, registry, backend) =>
        startCoordinator(
          bus,
          {
            taskSize: int(v, 'task-size', 1),
            taskAckWaitMs: int(v, 'ack-wait', 100),
            taskMaxDeliver: int(v, 'max-deliver', 1),
            reconcileIntervalMs: int(v, 'reconcile-interval', 100),
            cacheDir: cacheDir(v),
            leaseTtlMs: int(v, 'lease-ttl', 500),
            coordinatorId: str(v, 'coordinator-id'),
            allowModelFiles: Boolean(v['allow-model-files']) || process.env.GRAFT_ALLOW_MODEL_FILES === '1',
            allowPrivateModelHosts: Boolean(v['allow-private-model-hosts']),
            maxModelBytes: int(v, 'max-model-bytes', 1),
          },
          { logger: log, registry, backend },
        ),
      { maxQueuedTasks: int(v, 'max-queued-tasks', 1), replicas: int(v, 'replicas', 1), maxBytes },
    );
  },
};

const init: Command = {
  summary: 'create every stream, consumer and bucket graft uses, then exit',
  usage: `graft init [--nats URL] [--replicas N] [--max-bytes STORE=SIZE,...]

Creates graft's JetStream topology idempotently (the compose init service runs it once);
every other process also creates what is missing when it starts.

  --replicas N        copies of every stream and bucket, for a JetStream cluster of N or more
                      servers (default 1; 3 survives the loss of any one server)
${MAX_BYTES_HELP}
${NATS_HELP}`,
  options: { ...NATS_OPTIONS, replicas: { type: 'string' }, 'max-bytes': { type: 'string' } },
  async run(argv) {
    const { values: v } = parse(argv, this.options, false);
    const log = createLogger({ toStderr: true, level: 'warn' });
    const bus = await openWithRetry(busOptions(v, 'graft-init'), { replicas: int(v, 'replicas', 1), maxBytes: storeCaps(v) }, log, untilSignal());
    if (!bus) {
      process.stderr.write('graft init: stopped before the broker was ready: nothing created\n');
      return 1;
    }
    await bus.close();
    process.stderr.write('graft topology ready\n');
    return 0;
  },
};

export { up, worker, coordinator, init };
