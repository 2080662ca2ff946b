import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serverCredentials, startLocalNats, stopProcess, type LocalNats } from '@graft/protocol';

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
  /** Extractor processes; default one per core (the wasm backend is single-threaded). */
  workers?: number;
  /** Children's output: 'inherit' (graft up) or 'files' under dataDir/logs (graft train). */
  output?: 'inherit' | 'files';
  /** Extra arguments for every worker (e.g. --backend). */
  workerArgs?: string[];
  /** When set, the coordinator serves /metrics on this port and worker i on port + i. */
  metricsBasePort?: number;
  env?: NodeJS.ProcessEnv;
}

const MAIN = join(fileURLToPath(new URL('.', import.meta.url)), 'main.js');

export function defaultWorkers(): number {
  return Math.max(1, availableParallelism());
}

export async function startLocalCluster(o: LocalClusterOptions): Promise<LocalCluster> {
  await mkdir(join(o.dataDir, 'logs'), { recursive: true });
  const nats = o.natsUrl ? undefined : await startLocalNats({ dataDir: o.dataDir, port: o.port, logFile: join(o.dataDir, 'logs', 'nats-server.log'), binary: process.env.GRAFT_NATS_SERVER });
  const url = o.natsUrl ?? nats!.url;
  const given = serverCredentials(url);
  const natsEnv: NodeJS.ProcessEnv = { GRAFT_NATS_URL: given.servers.join(','), ...(given.user ? { GRAFT_NATS_USER: given.user } : {}), ...(given.pass !== undefined ? { GRAFT_NATS_PASSWORD: given.pass } : {}) };
  const children: ChildProcess[] = [];
  const launch = (name: string, args: string[]) => {
    const files = o.output === 'files';
    // Connection settings through the environment, never argv (where ps shows them to everyone).
    const child = spawn(process.execPath, [MAIN, ...args], {
      stdio: files ? ['ignore', 'pipe', 'pipe'] : ['ignore', 'inherit', 'inherit'],
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
  const n = o.workers ?? defaultWorkers();
  for (let i = 1; i <= n; i++) launch(`worker-${i}`, ['worker', '--worker-id', `local-${i}`, ...metrics(i), ...(o.workerArgs ?? [])]);
  let stopping: Promise<void> | undefined;
  return {
    url: given.servers.join(','),
    nats,
    children,
    stop() {
      stopping ??= (async () => {
        await Promise.all(children.map((c) => stopProcess(c, 30_000)));
        await nats?.stop();
      })();
      return stopping;
    },
  };
}
