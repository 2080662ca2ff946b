import { randomBytes } from 'node:crypto';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect } from '@nats-io/transport-node';

/** A nats-server process graft started on loopback (for `graft up`, `graft train`, tests and benchmarks). */
export interface LocalNats {
  url: string;
  port: number;
  monitorPort: number;
  storeDir: string;
  process: ChildProcess;
  /** Stops the server (SIGTERM, then SIGKILL after 5 s). */
  stop(): Promise<void>;
}

export interface LocalNatsOptions {
  /** Folder for the config and the JetStream store. */
  dataDir: string;
  /** The nats-server binary; default the one on PATH. */
  binary?: string;
  /** Client port; default a free one. */
  port?: number;
  /** Monitoring port; default a free one. */
  monitorPort?: number;
  /** Extra config text appended to the generated config (auth, limits). */
  extraConfig?: string;
  /** Where the server's own log goes; default ignored. */
  logFile?: string;
}

/** The nats-server binary named (the CLI passes $GRAFT_NATS_SERVER), else the one on PATH. @throws Error saying how to install it. */
export function findNatsServer(binary?: string): string {
  const candidate = binary || 'nats-server';
  const r = spawnSync(candidate, ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    throw new Error(
      `nats-server not found (tried ${JSON.stringify(candidate)}). Install it (Debian/Ubuntu: apt-get install nats-server; ` +
        'macOS: brew install nats-server; or a release from github.com/nats-io/nats-server) and put it on PATH, ' +
        'set GRAFT_NATS_SERVER to its path, or pass --nats URL to use a running server.',
    );
  }
  return candidate;
}

/** Whether nothing listens on 127.0.0.1:port. */
async function isPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Starts nats-server with JetStream on loopback, storing in dataDir, and waits until a
 * client can connect. Restarting on the same dataDir keeps every stream and bucket.
 */
export async function startLocalNats(opts: LocalNatsOptions): Promise<LocalNats> {
  const bin = findNatsServer(opts.binary);
  const port = opts.port ?? (await freePort());
  const monitorPort = opts.monitorPort ?? (await freePort());
  for (const [p, what] of [
    [port, 'client port'],
    [monitorPort, 'monitoring port'],
  ] as const) {
    if (!(await isPortFree(p)))
      throw new Error(
        `cannot start nats-server: its ${what} 127.0.0.1:${p} is in use (another nats-server, or another program); choose another with --port, or use the running server with --nats URL`,
      );
  }
  // Our server's name: the readiness check connects only to it, never to another on the same port.
  const given = /server_name:\s*([A-Za-z0-9_-]+)/.exec(opts.extraConfig ?? '')?.[1];
  const serverName = given ?? `graft-local-${randomBytes(6).toString('hex')}`;
  const storeDir = join(opts.dataDir, 'jetstream');
  await mkdir(storeDir, { recursive: true });
  const conf = join(opts.dataDir, 'nats-server.conf');
  await writeFile(
    conf,
    [
      given ? '' : `server_name: ${serverName}`,
      `listen: 127.0.0.1:${port}`,
      `http: 127.0.0.1:${monitorPort}`,
      // Manifests of large datasets exceed the 1 MB default.
      'max_payload: 8MB',
      `jetstream { store_dir: ${JSON.stringify(storeDir)} }`,
      opts.extraConfig ?? '',
    ].join('\n'),
  );
  const args = ['-c', conf];
  if (opts.logFile) args.push('-l', opts.logFile);
  const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const url = `nats://127.0.0.1:${port}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`nats-server exited with code ${child.exitCode}: ${stderr.trim()}`);
    try {
      const nc = await connect({
        servers: url,
        timeout: 1000,
        reconnect: false,
        ...(opts.extraConfig?.includes('authorization') ? { user: '_probe', pass: '_probe' } : {}),
      });
      const name = nc.info?.server_name;
      await nc.close();
      if (name !== serverName) throw new Error(`another server (${name}) answers on ${url}`);
      break;
    } catch (err) {
      if (/another server/.test((err as Error).message)) {
        child.kill('SIGKILL');
        throw err;
      }
      // An authorization error still proves the server is up (the port was ours: checked above).
      if (/authorization/i.test((err as Error).message)) break;
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`nats-server did not start on ${url} within 15 s: ${stderr.trim()}`);
      }
      await sleep(100);
    }
  }
  return {
    url,
    port,
    monitorPort,
    storeDir,
    process: child,
    async stop() {
      await stopProcess(child, 5000);
    },
  };
}

/**
 * SIGTERM, then SIGKILL after graceMs; resolves when the process has exited (at once when it
 * already has). Idempotent.
 * @returns its exit code (null when a signal ended it).
 */
export async function stopProcess(child: ChildProcess, graceMs: number): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
  const code = await exited;
  clearTimeout(t);
  return code;
}
