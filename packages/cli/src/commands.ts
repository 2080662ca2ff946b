import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Gauge, Registry } from 'prom-client';
import { startCoordinator } from '@graft/coordinator';
import { startWorker } from '@graft/extractor';
import { classifyFile, formatReport, loadClassifier, readModelFolder } from '@graft/head';
import { JobState, describeBus, openBus, type Bus, type BusOptions, type TopologyOptions } from '@graft/protocol';
import { BACKEND_NAMES, initBackend, type BackendName } from '@graft/vision';
import { NATS_HELP, NATS_OPTIONS, UsageError, busOptions, int, num, parse, str, type Options, type Values } from './args.js';
import { defaultWorkers, startLocalCluster } from './cluster.js';
import { exportModel } from './export.js';
import { followJob, jobDetails, jobJson, jobLine, listJobs, readJob } from './jobs.js';
import { createLogger } from './logger.js';
import { serveMetrics } from './metrics-server.js';
import { publishDataset, type PublishOptions } from './publish.js';
import { generateSampleSet, sampleImage } from './sample.js';
import { writeFile } from 'node:fs/promises';

export interface Command {
  summary: string;
  usage: string;
  options: Options;
  run(argv: string[]): Promise<number>;
}

const BACKEND_HELP = `  --backend NAME      auto (default, or $GRAFT_BACKEND), ${BACKEND_NAMES.join(', ')}`;

/**
 * A worker only opens the topology (least privilege); until graft init or the coordinator
 * has created it, wait and retry rather than exit.
 */
async function openWithRetry(opts: BusOptions, topology: TopologyOptions, log: ReturnType<typeof createLogger>): Promise<Bus> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await openBus(opts, topology);
    } catch (err) {
      if (topology.create !== false || !/does not exist/.test((err as Error).message)) throw err;
      if (attempt === 1 || attempt % 10 === 0) log.warn((err as Error).message);
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
}

/** Waits for SIGINT/SIGTERM; the one place graft installs signal handlers. */
function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (s: NodeJS.Signals) => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      resolve(s);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}

function graftHome(): string {
  return process.env.GRAFT_HOME ?? join(homedir(), '.graft');
}

async function withBus<T>(opts: BusOptions, fn: (bus: Bus) => Promise<T>): Promise<T> {
  const bus = await openBus(opts);
  try {
    return await fn(bus);
  } finally {
    await bus.close();
  }
}

async function backendFor(v: Values, log: ReturnType<typeof createLogger>) {
  const preferred = (str(v, 'backend') ?? process.env.GRAFT_BACKEND ?? 'auto') as BackendName | 'auto';
  try {
    return await initBackend({
      preferred,
      log: (c) => log.info({ backend: c.name, skipped: c.skipped }, `TensorFlow.js backend: ${c.name}`),
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

// ---- publish / train options ----------------------------------------------------------

const PUBLISH_OPTIONS: Options = {
  name: { type: 'string' },
  backbone: { type: 'string' },
  bottleneck: { type: 'string' },
  'input-size': { type: 'string' },
  preprocess: { type: 'string' },
  splits: { type: 'string' },
  optimizer: { type: 'string' },
  'learning-rate': { type: 'string' },
  'batch-size': { type: 'string' },
  epochs: { type: 'string' },
  patience: { type: 'string' },
  'validation-percent': { type: 'string' },
  'test-percent': { type: 'string' },
  seed: { type: 'string' },
  'vector-dtype': { type: 'string' },
  'no-standardize': { type: 'boolean' },
};

const PUBLISH_HELP = `  --name NAME               job name (default: the folder's name)
  --backbone SPEC           auto (default), inception_v3_mixed5 (embedded), mobilenet_v2, mobilenet_v3_large,
                            inception_v3, or a TF.js model path / file:// / http(s):// URL
  --bottleneck NAME         layer or node to cut at (global-average-pooled); default the model's output
  --input-size N            square input edge for a custom model (default: from the model)
  --preprocess MODE         unit (x/255, default), symmetric (x/127.5-1) or none
  --splits FILE             TSV of "path<TAB>train|validation|test" fixing each image's set
  --validation-percent N    default 10;  --test-percent N  default 10 (stable hash of the file name)
  --optimizer NAME          rmsprop (default), adam, sgd
  --learning-rate X         default 0.001 (sgd 0.01)
  --batch-size N            default: number of classes, clamped to 32..256
  --epochs N                default 100;  --patience N  early stopping, default 10 (0 = off)
  --seed N                  default 1;  --no-standardize  train on raw vectors
  --vector-dtype T          float32 (default) or float16 on the wire and in the cache`;

function publishOptions(v: Values): PublishOptions {
  const dtype = str(v, 'vector-dtype');
  if (dtype && dtype !== 'float32' && dtype !== 'float16') throw new UsageError(`--vector-dtype must be float32 or float16, got ${dtype}`);
  const optimizer = str(v, 'optimizer');
  if (optimizer && !['rmsprop', 'adam', 'sgd'].includes(optimizer)) throw new UsageError(`--optimizer must be rmsprop, adam or sgd, got ${optimizer}`);
  const val = int(v, 'validation-percent');
  const test = int(v, 'test-percent');
  if ((val ?? 10) + (test ?? 10) >= 100) throw new UsageError('--validation-percent plus --test-percent must be under 100');
  return {
    name: str(v, 'name'),
    backbone: str(v, 'backbone') ?? 'auto',
    overrides: { bottleneck: str(v, 'bottleneck'), inputSize: int(v, 'input-size', 16), preprocess: str(v, 'preprocess') },
    splitsFile: str(v, 'splits'),
    vectorDType: dtype as PublishOptions['vectorDType'],
    training: {
      optimizer: optimizer ?? '',
      learningRate: num(v, 'learning-rate') ?? 0,
      batchSize: int(v, 'batch-size', 1) ?? 0,
      epochs: int(v, 'epochs', 1) ?? 0,
      patience: int(v, 'patience') ?? 0,
      noEarlyStopping: int(v, 'patience') === 0,
      validationPercent: val ?? 0,
      testPercent: test ?? 0,
      seed: int(v, 'seed') ?? 0,
      noStandardize: Boolean(v['no-standardize']),
    },
  };
}

/** What a long-running process exposes to the CLI: its lifecycle. */
interface Service {
  readonly state: string;
  readonly closed: Promise<void>;
  close(): Promise<void>;
}

/**
 * Runs a worker or coordinator until SIGINT/SIGTERM (or until it stops by itself): picks the
 * backend, connects, serves /metrics when asked, then closes in order: service, metrics, bus.
 */
async function runService(v: Values, role: string, start: (bus: Bus, log: ReturnType<typeof createLogger>, registry: Registry, backend: string) => Promise<Service>, topology: TopologyOptions = {}): Promise<number> {
  const log = createLogger();
  const backend = await backendFor(v, log);
  const opts = busOptions(v, `graft-${role}-${process.pid}`);
  log.info({ bus: describeBus(opts) }, 'connecting');
  const bus = await openWithRetry(opts, topology, log);
  const registry = new Registry();
  const service = await start(bus, log, registry, backend.name);
  const port = int(v, 'metrics-port') ?? (process.env.GRAFT_METRICS_PORT ? Number(process.env.GRAFT_METRICS_PORT) : undefined);
  const server = port !== undefined ? await serveMetrics(registry, port, () => service.state === 'running' && !bus.nc.isClosed()) : undefined;
  await Promise.race([untilSignal(), service.closed]);
  await service.close();
  server?.close();
  await bus.close();
  return 0;
}

// ---- commands ---------------------------------------------------------------------------

const up: Command = {
  summary: 'run a whole cluster on this machine: nats-server, a coordinator and N workers',
  usage: `graft up [--workers N] [--port P] [--data DIR] [--nats URL]

Starts nats-server with JetStream (data in --data, default $GRAFT_HOME/cluster or ~/.graft/cluster)
unless --nats names a running server, one coordinator and N extractor workers. Ctrl-C stops
everything cleanly.

  --workers N         extractor processes (default: one per core = ${defaultWorkers()})
  --port P            client port of the started nats-server (default 4222)
  --metrics-port P    serve this process's /metrics on P, the coordinator's on P+1, worker i's on P+1+i
  --data DIR          data folder
${BACKEND_HELP}
${NATS_HELP}`,
  options: { ...NATS_OPTIONS, workers: { type: 'string' }, port: { type: 'string' }, data: { type: 'string' }, backend: { type: 'string' }, 'metrics-port': { type: 'string' } },
  async run(argv) {
    const { values: v } = parse(argv, this.options, false);
    const dataDir = resolve(str(v, 'data') ?? join(graftHome(), 'cluster'));
    const metricsPort = int(v, 'metrics-port', 1);
    const cluster = await startLocalCluster({
      dataDir,
      natsUrl: str(v, 'nats'),
      port: int(v, 'port', 1) ?? 4222,
      workers: int(v, 'workers', 1),
      output: 'inherit',
      workerArgs: str(v, 'backend') ? ['--backend', str(v, 'backend')!] : [],
      metricsBasePort: metricsPort !== undefined ? metricsPort + 1 : undefined,
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
      server = await serveMetrics(registry, metricsPort, () => true);
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
  --batch-size N      most images per backbone call (default 32 on GPU, 16 tfjs-node, 8 wasm; fewer when a call would outlast the task lease)
  --max-image-bytes N   larger images fail with TOO_LARGE (default 52428800)
  --max-image-pixels N  images with more pixels fail with TOO_LARGE, before decoding (default 100000000)
  --task-timeout MS   an image still decoding after this fails with TIMEOUT (default 300000)
  --metrics-port P    serve /metrics, /healthz, /readyz on P (default $GRAFT_METRICS_PORT, off if unset)
  --cache-dir DIR     downloaded backbones (default ~/.cache/graft/models)
${BACKEND_HELP}
${NATS_HELP}`,
  options: {
    ...NATS_OPTIONS,
    backend: { type: 'string' },
    'batch-size': { type: 'string' },
    'metrics-port': { type: 'string' },
    'worker-id': { type: 'string' },
    'cache-dir': { type: 'string' },
    'max-image-bytes': { type: 'string' },
    'max-image-pixels': { type: 'string' },
    'task-timeout': { type: 'string' },
  },
  async run(argv) {
    const { values: v } = parse(argv, this.options, false);
    return runService(v, 'worker', (bus, log, registry, backend) =>
      startWorker(
        bus,
        {
          workerId: str(v, 'worker-id'),
          inferBatchSize: int(v, 'batch-size', 1),
          cacheDir: str(v, 'cache-dir'),
          limits: { maxBytes: int(v, 'max-image-bytes', 1), maxPixels: int(v, 'max-image-pixels', 1) },
          taskTimeoutMs: int(v, 'task-timeout', 1),
        },
        { logger: log.child({ backend }), registry, backend },
      ),
      { create: false },
    );
  },
};

const coordinator: Command = {
  summary: 'run the coordinator (one per cluster)',
  usage: `graft coordinator [--nats URL] [--metrics-port P]

Consumes manifests, enqueues cache misses, collects vectors into the cache, trains and
evaluates heads, and stores models. Unfinished jobs resume on start.

  --task-size N         images per extraction task (default 16)
  --ack-wait MS         how long a worker holds a task without renewing its lease (default 30000)
  --max-deliver N       deliveries of a task before its images are reported failed (default 5)
  --max-queued-tasks N  task queue bound when creating it; publishing waits when full (default 100000)
  --metrics-port P      serve /metrics, /healthz, /readyz on P (default $GRAFT_METRICS_PORT, off if unset)
${BACKEND_HELP}
${NATS_HELP}`,
  options: {
    ...NATS_OPTIONS,
    backend: { type: 'string' },
    'task-size': { type: 'string' },
    'ack-wait': { type: 'string' },
    'max-deliver': { type: 'string' },
    'max-queued-tasks': { type: 'string' },
    'metrics-port': { type: 'string' },
    'cache-dir': { type: 'string' },
  },
  async run(argv) {
    const { values: v } = parse(argv, this.options, false);
    return runService(
      v,
      'coordinator',
      (bus, log, registry, backend) =>
        startCoordinator(
          bus,
          { taskSize: int(v, 'task-size', 1), taskAckWaitMs: int(v, 'ack-wait', 100), taskMaxDeliver: int(v, 'max-deliver', 1), cacheDir: str(v, 'cache-dir') },
          { logger: log, registry, backend },
        ),
      { maxQueuedTasks: int(v, 'max-queued-tasks', 1) },
    );
  },
};

const publish: Command = {
  summary: 'upload a class-per-folder image tree and start a job',
  usage: `graft publish DIR [options]

DIR holds one folder per class (DIR/cat/*.jpg, DIR/dog/*.jpg, ...). Images are uploaded once
(by content hash), the manifest is published, and the job id is printed on stdout.

${PUBLISH_HELP}
  --follow                  watch the job until it ends
${NATS_HELP}`,
  options: { ...NATS_OPTIONS, ...PUBLISH_OPTIONS, follow: { type: 'boolean' } },
  async run(argv) {
    const { values: v, positionals } = parse(argv, this.options);
    if (positionals.length !== 1) throw new UsageError('publish takes exactly one folder');
    const po = publishOptions(v);
    return withBus(busOptions(v, 'graft-cli'), async (bus) => {
      const p = await publishDataset(bus, positionals[0], po);
      process.stderr.write(`published ${p.scan.images.length} images in ${p.scan.classes.length} classes${p.scan.skipped.length ? `, skipped ${p.scan.skipped.length} files` : ''}\n`);
      process.stdout.write(`${p.jobId}\n`);
      if (!v.follow) return 0;
      const s = await followJob(bus, p.jobId);
      process.stdout.write(`${jobDetails(s)}\n`);
      return s.state === JobState.JOB_STATE_DONE ? 0 : 1;
    });
  },
};

const status: Command = {
  summary: 'show jobs, or one job; --follow streams its progress',
  usage: `graft status [JOB] [--follow] [--json] [--failed]

  --follow      stream progress until the job ends
  --json        machine-readable output
  --failed      list every image that failed, with its reason
${NATS_HELP}`,
  options: { ...NATS_OPTIONS, follow: { type: 'boolean' }, json: { type: 'boolean' }, failed: { type: 'boolean' } },
  async run(argv) {
    const { values: v, positionals } = parse(argv, this.options);
    return withBus(busOptions(v, 'graft-cli'), async (bus) => {
      if (!positionals[0]) {
        const jobs = await listJobs(bus);
        if (v.json) process.stdout.write(`${JSON.stringify(jobs.map(jobJson), null, 2)}\n`);
        else process.stdout.write(jobs.length ? `${jobs.map(jobLine).join('\n')}\n` : 'no jobs yet\n');
        return 0;
      }
      const id = positionals[0];
      let s = await readJob(bus, id);
      if (!s) {
        process.stderr.write(`no job ${id}\n`);
        return 1;
      }
      if (v.follow) s = await followJob(bus, id, { progress: !v.json, onUpdate: v.json ? (x) => process.stdout.write(`${JSON.stringify(jobJson(x))}\n`) : undefined });
      if (v.json) {
        if (!v.follow) process.stdout.write(`${JSON.stringify(jobJson(s), null, 2)}\n`);
      } else process.stdout.write(`${jobDetails(s, Boolean(v.failed))}\n`);
      return s.state === JobState.JOB_STATE_FAILED ? 1 : 0;
    });
  },
};

const exportCmd: Command = {
  summary: "write a finished job's model to a folder",
  usage: `graft export JOB DIR

Writes model.json + weights.bin (the head, a TF.js layers model taking raw bottleneck
vectors), graft.json (labels, backbone and preprocessing) and report.json (test accuracy,
per-class accuracy, confusion matrix). graft classify DIR IMAGE uses it without NATS.
${NATS_HELP}`,
  options: { ...NATS_OPTIONS },
  async run(argv) {
    const { values: v, positionals } = parse(argv, this.options);
    if (positionals.length !== 2) throw new UsageError('export takes JOB and DIR');
    await withBus(busOptions(v, 'graft-cli'), (bus) => exportModel(bus, positionals[0], positionals[1]));
    process.stderr.write(`model written to ${positionals[1]}\n`);
    return 0;
  },
};

const classify: Command = {
  summary: 'classify images with an exported model (no NATS needed)',
  usage: `graft classify MODEL_DIR IMAGE... [--top K] [--json]

  --top K       labels to show per image (default 3)
  --json        one JSON object per image
${BACKEND_HELP}`,
  options: { top: { type: 'string' }, json: { type: 'boolean' }, backend: { type: 'string' }, 'cache-dir': { type: 'string' } },
  async run(argv) {
    const { values: v, positionals } = parse(argv, this.options);
    if (positionals.length < 2) throw new UsageError('classify takes MODEL_DIR and at least one IMAGE');
    const log = createLogger({ toStderr: true, level: process.env.GRAFT_LOG_LEVEL ?? 'warn' });
    await backendFor(v, log);
    const c = await loadClassifier(positionals[0], { cacheDir: str(v, 'cache-dir') });
    const k = int(v, 'top', 1) ?? 3;
    let failed = 0;
    for (const img of positionals.slice(1)) {
      try {
        const preds = await classifyFile(c, img, k);
        if (v.json) process.stdout.write(`${JSON.stringify({ image: img, predictions: preds })}\n`);
        else process.stdout.write(`${img}: ${preds.map((p) => `${p.label} ${(100 * p.probability).toFixed(1)}%`).join(', ')}\n`);
      } catch (err) {
        failed++;
        const reason = (err as Error).message;
        if (v.json) process.stdout.write(`${JSON.stringify({ image: img, error: reason })}\n`);
        else process.stderr.write(`${img}: ${reason}\n`);
      }
    }
    c.dispose();
    return failed ? 1 : 0;
  },
};

const TRAIN_OPTIONS: Options = { ...NATS_OPTIONS, ...PUBLISH_OPTIONS, out: { type: 'string' }, workers: { type: 'string' }, data: { type: 'string' }, backend: { type: 'string' } };

/** publish + follow + export, on --nats or an embedded local cluster. */
async function trainFolder(dir: string, v: Values, out: string): Promise<{ code: number; out: string }> {
  const po = publishOptions(v);
  const natsUrl = str(v, 'nats');
  const dataDir = resolve(str(v, 'data') ?? join(graftHome(), 'cluster'));
  const cluster = natsUrl
    ? undefined
    : await startLocalCluster({ dataDir, workers: int(v, 'workers', 1), output: 'files', workerArgs: str(v, 'backend') ? ['--backend', str(v, 'backend')!] : [] });
  if (cluster) process.stderr.write(`started a local cluster (${cluster.children.length - 1} workers, data and logs in ${dataDir})\n`);
  const stopOnSignal = untilSignal().then(async () => {
    process.stderr.write('\ninterrupted: stopping (the job resumes when you run graft up or train again)\n');
    await cluster?.stop();
    process.exit(130);
  });
  void stopOnSignal;
  try {
    return await withBus({ ...busOptions(v, 'graft-cli'), servers: cluster?.url ?? natsUrl }, async (bus) => {
      const p = await publishDataset(bus, dir, po);
      process.stderr.write(`job ${p.jobId}: ${p.scan.images.length} images in ${p.scan.classes.length} classes (${p.scan.classes.join(', ')})\n`);
      const s = await followJob(bus, p.jobId);
      if (s.state !== JobState.JOB_STATE_DONE) {
        process.stderr.write(`${jobDetails(s, true)}\n`);
        return { code: 1, out };
      }
      await exportModel(bus, p.jobId, out);
      const folder = await readModelFolder(out);
      const lines = [
        '',
        jobDetails(s, true),
        '',
        formatReport(folder.report),
        '',
        `model written to ${out}`,
        `classify a photo with: graft classify ${out} PHOTO.jpg`,
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
      return { code: 0, out };
    });
  } finally {
    await cluster?.stop();
  }
}

const train: Command = {
  summary: 'the one-command path: publish, extract, train, evaluate and export',
  usage: `graft train DIR [--out DIR] [--nats URL] [--workers N] [publish options]

Uses --nats, or starts a local cluster (nats-server + coordinator + workers, data in --data),
publishes DIR, shows extraction and training progress, prints the evaluation and writes the
model to --out (default ./graft-model).

  --out DIR                 model folder (default ./graft-model)
  --workers N               workers of the local cluster (default one per core)
  --data DIR                local cluster data folder (default ~/.graft/cluster); the vector cache lives here
${PUBLISH_HELP}
${BACKEND_HELP}
${NATS_HELP}`,
  options: TRAIN_OPTIONS,
  async run(argv) {
    const { values: v, positionals } = parse(argv, this.options);
    if (positionals.length !== 1) throw new UsageError('train takes exactly one folder');
    if (!existsSync(positionals[0])) throw new UsageError(`no such folder: ${positionals[0]}`);
    return (await trainFolder(positionals[0], v, resolve(str(v, 'out') ?? 'graft-model'))).code;
  },
};

const demo: Command = {
  summary: 'generate a sample photo set, train on it with a local cluster, classify a held-out photo',
  usage: `graft demo [--per-class N] [--out DIR] [--workers N]

What npm start runs: writes a sample set of 4 shape classes, trains on the embedded backbone
with a local cluster, prints the test accuracy, and classifies a photo it never saw.

  --per-class N       images per class (default 30)
  --out DIR           model folder (default ./graft-model)
${BACKEND_HELP}`,
  options: { ...TRAIN_OPTIONS, 'per-class': { type: 'string' } },
  async run(argv) {
    const { values: v } = parse(argv, this.options, false);
    const work = await mkdtemp(join(tmpdir(), 'graft-demo-'));
    try {
      const data = await generateSampleSet(join(work, 'shapes'), int(v, 'per-class', 5) ?? 30);
      process.stderr.write(`sample set: ${data} (4 classes of generated photos)\n`);
      const out = resolve(str(v, 'out') ?? 'graft-model');
      const args = { 'validation-percent': '15', 'test-percent': '20', backbone: 'inception_v3_mixed5', ...v };
      const r = await trainFolder(data, args, out);
      if (r.code !== 0) return r.code;
      const heldOut = join(work, 'held-out-triangle.jpg');
      await writeFile(heldOut, await sampleImage('triangle', 987_654_321));
      const backendLog = createLogger({ toStderr: true, level: 'warn' });
      await backendFor(v, backendLog);
      const c = await loadClassifier(out);
      const preds = await classifyFile(c, heldOut, 3);
      c.dispose();
      process.stdout.write(`\nheld-out photo (a triangle the model never saw): ${preds.map((p) => `${p.label} ${(100 * p.probability).toFixed(1)}%`).join(', ')}\n`);
      return preds[0]?.label === 'triangle' ? 0 : 1;
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  },
};

const init: Command = {
  summary: 'create every stream, consumer and bucket graft uses, then exit',
  usage: `graft init [--nats URL]

Creates graft's JetStream topology idempotently (the compose init service runs it once);
every other process also creates what is missing when it starts.
${NATS_HELP}`,
  options: { ...NATS_OPTIONS },
  async run(argv) {
    const { values: v } = parse(argv, this.options, false);
    await withBus(busOptions(v, 'graft-init'), async () => undefined);
    process.stderr.write('graft topology ready\n');
    return 0;
  },
};

export const COMMANDS: Record<string, Command> = { train, publish, status, export: exportCmd, classify, up, worker, coordinator, init, demo };

