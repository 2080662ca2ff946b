import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serverCredentials, startLocalNats, stopProcess, type LocalNats } from '@graft/protocol';
import { ClusterRunning, lockDataDir, type HeldLock } from './data-lock.js';

/** A whole graft cluster on this machine: nats-server, one coordinator, N workers. */
export interface LocalCluster {
  url: string;
  nats?: LocalNats;
  children: ChildProcess[];
  /** SIGTERM to every process (workers drain), then the broker. Idempotent. */
  stop(): Promise<void>;
}

export interface LocalClusterOptions {
  /** Data folder: JetStream store, logs. */
  dataDir: string;
  /** Use this server instead of starting one. */
  natsUrl?: string;
  /** Client port of a started server; default a free port. */
  port?: number;
  /** Extractor processes and their ONNX Runtime threads; default localLayout's for this machine. */
  workers?: number;
  threads?: number;
  /** The workers' --backend (a single-threaded TF.js backend gets one worker per core). */
  backend?: string;
  /** Children's output: 'inherit' (graft up) or 'files' under dataDir/logs (graft train). */
  output?: 'inherit' | 'files';
  /** Extra arguments for every worker (e.g. --backend). */
  workerArgs?: string[];
  /** When set, the coordinator serves /metrics on this port and worker i on port + i. */
  metricsBasePort?: number;
  env?: NodeJS.ProcessEnv;
  /** The command starting it, for the data folder's lock (graft up, graft train). */
  command?: string;
}

const MAIN = join(fileURLToPath(new URL('.', import.meta.url)), 'main.js');

/** ONNX Runtime threads per worker of a local cluster by default. */
const THREADS_PER_WORKER = 2;

/**
 * How a local cluster spreads its workers over the cores: one worker per two cores, each with two
 * ONNX Runtime threads (on 2 cores one worker of two threads extracted 1.21x two workers of one
 * thread: BENCHMARKS.md, "Backbones"); TF.js backends run one thread, so one worker per core.
 */
export function localLayout(cores: number, o: { workers?: number; threads?: number; backend?: string } = {}): { workers: number; threads: number } {
  const singleThreaded = o.backend !== undefined && o.backend !== 'auto' && o.backend !== 'onnxruntime';
  const workers = o.workers ?? (singleThreaded ? cores : Math.max(1, Math.floor(cores / THREADS_PER_WORKER)));
  return { workers: Math.max(1, workers), threads: o.threads ?? Math.max(1, Math.floor(cores / Math.max(1, workers))) };
}

/** Workers a local cluster starts by default on this machine. */
export function defaultWorkers(backend?: string): number {
  return localLayout(availableParallelism(), { backend }).workers;
}

/**
 * Starts a local cluster: nats-server on the data folder (taking its lock: one cluster per data
 * folder), a coordinator and the workers; or only the coordinator and workers on `natsUrl`.
 * @throws ClusterRunning when a running cluster holds the data folder (nothing is started).
 */
export async function startLocalCluster(o: LocalClusterOptions): Promise<LocalCluster> {
  await mkdir(join(o.dataDir, 'logs'), { recursive: true });
  let lock: HeldLock | undefined;
  if (!o.natsUrl) {
    const taken = await lockDataDir(o.dataDir, '', o.command ?? 'graft');
    if ('heldBy' in taken) throw new ClusterRunning(o.dataDir, taken.heldBy);
    lock = taken;
  }
  let nats: LocalNats | undefined;
  try {
    nats = o.natsUrl
      ? undefined
      : await startLocalNats({ dataDir: o.dataDir, port: o.port, logFile: join(o.dataDir, 'logs', 'nats-server.log'), binary: process.env.GRAFT_NATS_SERVER });
    if (nats) await lock!.setUrl(serverCredentials(nats.url).servers.join(','));
  } catch (err) {
    await lock?.release();
    throw err;
  }
  const url = o.natsUrl ?? nats!.url;
  const given = serverCredentials(url);
  const natsEnv: NodeJS.ProcessEnv = {
    GRAFT_NATS_URL: given.servers.join(','),
    ...(given.user ? { GRAFT_NATS_USER: given.user } : {}),
    ...(given.pass !== undefined ? { GRAFT_NATS_PASSWORD: given.pass } : {}),
  };
  const children: ChildProcess[] = [];
  const launch = (name: string, args: string[]) => {
    const files = o.output === 'files';
    // Connection settings through the environment, never argv (where ps shows them to everyone).
    const child = spawn(process.execPath, [MAIN, ...args], {
      // A child's logs are logs: to this process's stderr (stdout is an answer's), or to its file.
      stdio: files ? ['ignore', 'pipe', 'pipe'] : ['ignore', 2, 2],
      env: { ...process.env, ...o.env, ...natsEnv },
    });
    if (files) {
      const log = createWriteStream(join(o.dataDir, 'logs', `${name}.log`), { flags: 'a' });
      child.stdout!.pipe(log);
      child.stderr!.pipe(log);
    }
    children.push(child);
  };
  const metrics = (i: number) => (o.metricsBasePort ? ['--metrics-port', String(o.metricsBasePort + i)] : []);
  // The operator's own machine: manifests may name local model files and hosts.
  launch('coordinator', ['coordinator', '--allow-model-files', '--allow-private-model-hosts', ...metrics(0)]);
  const layout = localLayout(availableParallelism(), o);
  const args = ['--threads', String(layout.threads), ...(o.backend ? ['--backend', o.backend] : []), ...(o.workerArgs ?? [])];
  for (let i = 1; i <= layout.workers; i++) launch(`worker-${i}`, ['worker', '--worker-id', `local-${i}`, ...metrics(i), ...args]);
  let stopping: Promise<void> | undefined;
  return {
    url: given.servers.join(','),
    nats,
    children,
    stop() {
      stopping ??= (async () => {
        await Promise.all(children.map((c) => stopProcess(c, 30_000)));
        await nats?.stop();
        await lock?.release();
      })();
      return stopping;
    },
  };
}
