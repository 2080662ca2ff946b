import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Gauge, Registry } from 'prom-client';
import { startCoordinator } from '@graft/coordinator';
import { startWorker } from '@graft/extractor';
import { classifyFile, loadClassifier } from '@graft/head';
import { JobState, listJobs, readJob } from '@graft/protocol';
import { BACKEND_NAMES, inspectModel } from '@graft/vision';
import { MAX_BYTES_HELP, NATS_HELP, NATS_OPTIONS, PUBLISH_HELP, PUBLISH_OPTIONS, UsageError, busOptions, graftHome, int, parse, publishOptions, storeCaps, str, type Options } from './args.js';
import { defaultWorkers, startLocalCluster } from './cluster.js';
import { exportModel, exportSummary } from './export.js';
import { isGpuChild, resolveGpus, superviseGpuWorkers, withoutOptions } from './gpu-workers.js';
import { followJob, jobDetails, jobJson, jobLine } from './jobs.js';
import { createLogger } from './logger.js';
import { serveMetrics } from './metrics-server.js';
import { isImageListFile } from './image-list.js';
import { planDataset, publishDataset } from './publish.js';
import { backendFor, cacheDir, metricsPort, openWithRetry, runService, untilSignal, withBus } from './service.js';
import { report, serve } from './show-commands.js';
import { sweepJob, trainFolder } from './train-flow.js';

/* The command table: each command's usage and what it runs. */

export interface Command {
  summary: string;
  usage: string;
  options: Options;
  run(argv: string[]): Promise<number>;
}

const BACKEND_HELP = `  --backend NAME      auto (default, or $GRAFT_BACKEND), ${BACKEND_NAMES.join(', ')}`;


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
  --task-timeout MS   a task still running after this (fetch, decode, inference; model loading not counted)
                      fails its remaining images with TIMEOUT (default 300000)
  --metrics-port P    serve /metrics, /healthz, /readyz on P (default $GRAFT_METRICS_PORT, off if unset)
  --gpus all|LIST     one worker process per GPU (all: NVIDIA_VISIBLE_DEVICES's list, else nvidia-smi's;
                      or e.g. 0,1), each seeing only its own (CUDA_VISIBLE_DEVICES), restarted if it
                      dies; their metrics are served summed on --metrics-port

Backbones come from the cluster's model store, put there by the coordinator: a worker
downloads nothing and reads no model path a manifest names.
${BACKEND_HELP}
${NATS_HELP}`,
  options: {
    ...NATS_OPTIONS,
    backend: { type: 'string' },
    'batch-size': { type: 'string' },
    'metrics-port': { type: 'string' },
    'worker-id': { type: 'string' },
    'max-image-bytes': { type: 'string' },
    'max-image-pixels': { type: 'string' },
    'task-timeout': { type: 'string' },
    gpus: { type: 'string' },
  },
  async run(argv) {
    const { values: v } = parse(argv, this.options, false);
    const gpus = str(v, 'gpus');
    if (gpus && !isGpuChild()) {
      return superviseGpuWorkers(resolveGpus(gpus), withoutOptions(argv, ['gpus', 'metrics-port', 'worker-id']), { workerId: str(v, 'worker-id'), metricsPort: metricsPort(v), log: createLogger() });
    }
    return runService(v, 'worker', (bus, log, registry, backend) =>
      startWorker(
        bus,
        {
          workerId: str(v, 'worker-id'),
          inferBatchSize: int(v, 'batch-size', 1),
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
evaluates heads, and stores models. Unfinished jobs resume on start. Start as many as you
like: one leads (a lease in NATS), the others stand by and take over when it stops.

  --task-size N         images per extraction task (default 16)
  --ack-wait MS         how long a worker holds a task without renewing its lease (default 30000)
  --max-deliver N       deliveries of a task before its images are reported failed (default 5)
  --max-queued-tasks N  task queue bound when creating it; publishing waits when full (default 100000)
  --lease-ttl MS        one coordinator leads; others stand by and take over this long after it stops (default 10000)
  --allow-model-files   let manifests name file:// backbones on this machine (off: anyone who can publish
                        could make the coordinator read any file; graft up and graft train turn it on)
  --max-model-bytes N   largest backbone a manifest may name (default 1073741824)
  --cache-dir DIR       downloaded backbones (default $GRAFT_CACHE_DIR or ~/.cache/graft/models)
  --replicas N          copies of each stream and bucket it creates (a JetStream cluster; see graft init)
${MAX_BYTES_HELP}
  --coordinator-id ID   name in the lease and logs (default host-pid)
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
    'lease-ttl': { type: 'string' },
    'coordinator-id': { type: 'string' },
    'allow-model-files': { type: 'boolean' },
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
            cacheDir: cacheDir(v),
            leaseTtlMs: int(v, 'lease-ttl', 500),
            coordinatorId: str(v, 'coordinator-id'),
            allowModelFiles: Boolean(v['allow-model-files']) || process.env.GRAFT_ALLOW_MODEL_FILES === '1',
            maxModelBytes: int(v, 'max-model-bytes', 1),
          },
          { logger: log, registry, backend },
        ),
      { maxQueuedTasks: int(v, 'max-queued-tasks', 1), replicas: int(v, 'replicas', 1), maxBytes },
    );
  },
};

const publish: Command = {
  summary: 'upload a class-per-folder tree or an image list (CSV, TSV, JSONL) and start a job',
  usage: `graft publish DIR|LIST [options]

DIR holds one folder per class (DIR/cat/*.jpg, DIR/dog/*.jpg, ...); LIST is a .csv, .tsv or
.jsonl file naming images (paths relative to it, absolute paths or http(s) URLs) with labels and
optional splits. Images are uploaded once (by content hash; URLs are downloaded by this command),
the manifest is published, and the job id is printed on stdout.

${PUBLISH_HELP}
  --follow                  watch the job until it ends
${NATS_HELP}`,
  options: { ...NATS_OPTIONS, ...PUBLISH_OPTIONS, follow: { type: 'boolean' } },
  async run(argv) {
    const { values: v, positionals } = parse(argv, this.options);
    if (positionals.length !== 1) throw new UsageError('publish takes exactly one folder or list file');
    const po = publishOptions(v);
    if (v['dry-run']) {
      const plan = await planDataset(positionals[0], po);
      process.stdout.write(`${plan.text}\n`);
      return plan.ok ? 0 : 1;
    }
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
  summary: "write a finished job's model to a folder (with report.html, and web/ with --bundle)",
  usage: `graft export JOB DIR [--bundle]

Writes model.json + weights.bin (the head, a TF.js layers model taking raw bottleneck
vectors), graft.json (labels, backbone and preprocessing), report.json (test accuracy,
per-class accuracy, confusion matrix, training history, misclassified test images) and
report.html (the same, to look at: thumbnails from the image store). graft classify DIR IMAGE
uses the folder without NATS.

  --bundle            also write DIR/web: backbone and head as one TF.js model for browsers,
                      labels.json and a try-it page (graft serve DIR)
${BACKEND_HELP}
${NATS_HELP}`,
  options: { ...NATS_OPTIONS, bundle: { type: 'boolean' }, backend: { type: 'string' }, 'cache-dir': { type: 'string' } },
  async run(argv) {
    const { values: v, positionals } = parse(argv, this.options);
    if (positionals.length !== 2) throw new UsageError('export takes JOB and DIR');
    if (v.bundle) await backendFor(v, createLogger({ toStderr: true, level: 'warn' }));
    const r = await withBus(busOptions(v, 'graft-cli'), (bus) =>
      exportModel(bus, positionals[0], positionals[1], { bundle: Boolean(v.bundle), cacheDir: cacheDir(v), onProgress: (m) => process.stderr.write(`${m}\n`) }),
    );
    process.stderr.write(`${exportSummary(positionals[1], r).join('\n')}\n`);
    return 0;
  },
};

const inspect: Command = {
  summary: 'list the nodes or layers of a model (.pb, TF.js model.json, catalogue name) and where its bottleneck is',
  usage: `graft inspect MODEL [--json] [--input-size N] [--input-node NODE]

MODEL is a frozen TensorFlow GraphDef (.pb, or ARCHIVE.zip#member.pb / .tgz#member.pb), a TF.js
model.json (file or folder), a URL of either, or a catalogue name. Prints every node or layer with
its op and output shape (for one image), the input graft feeds (and, for a .pb, the decoding head it
replaces and the preprocessing the graph does itself) and the likely bottlenecks: the pooled output
before the classifier. Use one with --bottleneck.

  --json              one JSON object, for scripts
  --input-size N      input edge when the model does not say it
  --input-node NODE   the node to feed, when graft cannot tell (a .pb without a decoding head)`,
  options: { json: { type: 'boolean' }, 'input-size': { type: 'string' }, 'input-node': { type: 'string' }, backend: { type: 'string' }, 'cache-dir': { type: 'string' } },
  async run(argv) {
    const { values: v, positionals } = parse(argv, this.options);
    if (positionals.length !== 1) throw new UsageError('inspect takes exactly one model');
    const log = createLogger();
    await backendFor(v, log);
    const r = await inspectModel(positionals[0], { cacheDir: cacheDir(v), inputSize: int(v, 'input-size', 1), inputNode: str(v, 'input-node') });
    if (v.json) {
      process.stdout.write(`${JSON.stringify(r)}\n`);
      return 0;
    }
    const width = Math.min(60, Math.max(...r.nodes.map((n) => n.name.length)));
    const lines = r.nodes.map((n) => {
      const marks = [n.name === r.input?.name ? '<- input' : '', r.bottleneckCandidates.includes(n.name) ? '<- bottleneck candidate' : ''].filter(Boolean).join(' ');
      return `${n.name.padEnd(width)}  ${n.op.padEnd(32)}  ${(n.shape ? `[${n.shape.join(', ')}]` : '-').padEnd(18)} ${marks}`.trimEnd();
    });
    const summary = [
      `${r.origin} (${r.format}, ${r.nodes.length} ${r.format === 'layers-model' ? 'layers' : 'nodes'})`,
      r.input ? `input: ${r.input.name}, ${r.input.size}x${r.input.size} RGB${r.input.decodingReplaced ? ' (its image decoding head is replaced by graft\'s)' : ''}${r.input.preprocessing ? `; the graph computes ${r.input.preprocessing} itself` : ''}` : 'input: not found (pass --input-node)',
      `bottleneck candidates: ${r.bottleneckCandidates.join(', ') || 'none found (pick a pooled node below)'}`,
      ...(r.note ? [r.note] : []),
    ];
    process.stdout.write(`${lines.join('\n')}\n\n${summary.join('\n')}\n`);
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
    const c = await loadClassifier(positionals[0], { cacheDir: cacheDir(v) });
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

const TRAIN_OPTIONS: Options = { ...NATS_OPTIONS, ...PUBLISH_OPTIONS, out: { type: 'string' }, workers: { type: 'string' }, data: { type: 'string' }, backend: { type: 'string' }, 'no-bundle': { type: 'boolean' } };

const train: Command = {
  summary: 'the one-command path: publish, extract, train, evaluate and export',
  usage: `graft train DIR|LIST [--out DIR] [--nats URL] [--workers N] [publish options]

Uses --nats, or starts a local cluster (nats-server + coordinator + workers, data in --data),
publishes DIR (a class-per-folder tree) or LIST (a .csv, .tsv or .jsonl image list), shows
extraction and training progress, prints the evaluation and writes the model to --out
(default ./graft-model), with report.html and web/ (graft serve DIR opens its try-it page).

  --out DIR                 model folder (default ./graft-model)
  --workers N               workers of the local cluster (default one per core)
  --data DIR                local cluster data folder (default ~/.graft/cluster); the vector cache lives here
  --no-bundle               skip the browser bundle (DIR/web: the model as one TF.js model and a try-it page)
${PUBLISH_HELP}
${BACKEND_HELP}
${NATS_HELP}`,
  options: TRAIN_OPTIONS,
  async run(argv) {
    const { values: v, positionals } = parse(argv, this.options);
    if (positionals.length !== 1) throw new UsageError('train takes exactly one folder or list file');
    if (!existsSync(positionals[0])) throw new UsageError(`no such ${isImageListFile(positionals[0]) ? 'file' : 'folder'}: ${positionals[0]}`);
    if (v['dry-run']) {
      const plan = await planDataset(positionals[0], publishOptions(v));
      process.stdout.write(`${plan.text}\n`);
      return plan.ok ? 0 : 1;
    }
    return trainFolder(positionals[0], v, resolve(str(v, 'out') ?? 'graft-model'));
  },
};

const sweep: Command = {
  summary: "train a grid of heads on a finished job's cached vectors and export the best",
  usage: `graft sweep JOB [--sweep-grid FILE] [--out DIR] [--nats URL]

Publishes JOB's images again as a new job that sweeps heads (no upload, no backbone call: the
vectors are cached), picks the head with the best validation accuracy (ties: lower validation
loss), prints the whole table and writes the winner's model folder (report.json and report.html
list every head).

  --sweep-grid FILE   the grid as JSON (default grid: see README)
  --out DIR           model folder (default ./graft-model)
  --no-bundle         skip DIR/web
${NATS_HELP}`,
  options: { ...NATS_OPTIONS, 'sweep-grid': { type: 'string' }, out: { type: 'string' }, 'no-bundle': { type: 'boolean' }, backend: { type: 'string' }, 'cache-dir': { type: 'string' } },
  async run(argv) {
    const { values: v, positionals } = parse(argv, this.options);
    if (positionals.length !== 1) throw new UsageError('sweep takes one JOB');
    return sweepJob(positionals[0], v, resolve(str(v, 'out') ?? 'graft-model'));
  },
};

/** The photos `graft demo` trains on, shipped in this package (samples/SOURCE.md: CC0). */
const SAMPLES = fileURLToPath(new URL('../samples/', import.meta.url));

const demo: Command = {
  summary: 'train on the bundled real photos with a local cluster, then classify a held-out photo',
  usage: `graft demo [--out DIR] [--workers N] [--backbone SPEC]

What npm start runs: trains a classifier on 200 real photos of clothing in 10 classes
(CC0, shipped with graft) with the embedded ImageNet MobileNetV2 and a local cluster, prints
the test accuracy per class, and classifies a photo it never saw.

  --out DIR           model folder (default ./graft-model)
  --workers N         extractor processes (default one per core)
  --backbone SPEC     default mobilenet_v2_035 (embedded, no network)
${BACKEND_HELP}`,
  options: TRAIN_OPTIONS,
  async run(argv) {
    const { values: v } = parse(argv, this.options, false);
    const data = join(SAMPLES, 'clothing');
    process.stderr.write(`sample set: ${data} (10 classes, 20 real photos each)\n`);
    const out = resolve(str(v, 'out') ?? 'graft-model');
    const args = { 'validation-percent': '15', 'test-percent': '20', backbone: 'mobilenet_v2_035', ...v };
    const code = await trainFolder(data, args, out);
    if (code !== 0) return code;
    const heldOut = join(SAMPLES, 'held-out', 'shoes.jpg');
    await backendFor(v, createLogger({ toStderr: true, level: 'warn' }));
    const c = await loadClassifier(out);
    const preds = await classifyFile(c, heldOut, 3);
    c.dispose();
    process.stdout.write(`\nheld-out photo (shoes the model never saw, ${heldOut}): ${preds.map((p) => `${p.label} ${(100 * p.probability).toFixed(1)}%`).join(', ')}\n`);
    return preds[0]?.label === 'shoes' ? 0 : 1;
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
    const bus = await openWithRetry(busOptions(v, 'graft-init'), { replicas: int(v, 'replicas', 1), maxBytes: storeCaps(v) }, log);
    await bus.close();
    process.stderr.write('graft topology ready\n');
    return 0;
  },
};

export const COMMANDS: Record<string, Command> = { train, sweep, publish, status, export: exportCmd, report, serve, classify, inspect, up, worker, coordinator, init, demo };

