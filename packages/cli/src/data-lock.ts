import { mkdir, open, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/*
 * One local cluster per data folder. nats-server does not lock its JetStream store: two servers on
 * one folder both run and corrupt each other's streams (a lease bucket that keeps nothing it is
 * given). So whoever starts a local cluster (graft up, train, demo) first takes the folder's lock
 * (a file made with O_EXCL, naming its process and its NATS URL); a second one finds the lock and
 * uses that cluster, or refuses, instead of starting another server. A lock whose process is gone
 * is stale and taken over.
 */

/** The lock file, in the data folder. */
export const LOCK_FILE = 'cluster.lock';

/** What a lock says: who holds the folder, and where its cluster answers. */
export interface DataLock {
  pid: number;
  /** NATS URL of the cluster (without credentials). */
  url: string;
  /** The command that started it (graft up, graft train...). */
  command: string;
  startedAt: string;
}

/** A lock this process holds. */
export interface HeldLock {
  readonly lock: DataLock;
  /** Says where the cluster answers, once its server is up. */
  setUrl(url: string): Promise<void>;
  /** Gives the folder up (only when the file is still ours). Idempotent. */
  release(): Promise<void>;
}

/** Thrown when a data folder is held by a running cluster. */
export class ClusterRunning extends Error {
  constructor(
    readonly dataDir: string,
    readonly held: DataLock,
  ) {
    super(`the data folder ${dataDir} is in use by a running cluster (${held.command}, pid ${held.pid}${held.url ? `, NATS at ${held.url}` : ''})`);
    this.name = 'ClusterRunning';
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // alive, another user's
  }
}

/** Reads a lock file; undefined when there is none or it is not one. */
async function readLock(dataDir: string): Promise<DataLock | undefined> {
  try {
    return JSON.parse(await readFile(join(dataDir, LOCK_FILE), 'utf8')) as DataLock;
  } catch {
    return undefined;
  }
}

/**
 * The running cluster that holds a data folder, or undefined (no lock, or a stale one). A cluster
 * still starting (its server not up yet) is waited for, up to `waitMs`, so its URL is known.
 */
export async function runningCluster(dataDir: string, waitMs = 15_000): Promise<DataLock | undefined> {
  const until = Date.now() + waitMs;
  for (;;) {
    const held = await readLock(dataDir);
    if (!held || !Number.isInteger(held.pid) || held.pid === process.pid || !alive(held.pid)) return undefined;
    if (held.url || Date.now() > until) return held;
    await new Promise((r) => setTimeout(r, 250));
  }
}

/**
 * Takes a data folder for a local cluster about to start at `url`.
 * @returns the lock, or the cluster holding the folder already (then nothing is taken).
 */
export async function lockDataDir(dataDir: string, url: string, command: string): Promise<HeldLock | { heldBy: DataLock }> {
  await mkdir(dataDir, { recursive: true });
  const file = join(dataDir, LOCK_FILE);
  const lock: DataLock = { pid: process.pid, url, command, startedAt: new Date().toISOString() };
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const f = await open(file, 'wx', 0o600);
      await f.writeFile(`${JSON.stringify(lock)}\n`);
      await f.close();
      let released = false;
      return {
        lock,
        async setUrl(u: string) {
          lock.url = u;
          await writeFile(file, `${JSON.stringify(lock)}\n`, { mode: 0o600 });
        },
        async release() {
          if (released) return;
          released = true;
          const now = await readFile(file, 'utf8').catch(() => '');
          if (now.includes(`"pid":${process.pid},`)) await rm(file, { force: true });
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const held = await runningCluster(dataDir);
    if (held) return { heldBy: held };
    await rm(file, { force: true }); // stale: its process is gone
  }
  throw new Error(`cannot take the data folder ${dataDir}: ${file} keeps coming back (another graft starting there?)`);
}
