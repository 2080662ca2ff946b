import { spawn, type ChildProcess } from 'node:child_process';
import { stopProcess } from '@graft/protocol/testing';
import { CLI } from './fixtures.js';

export interface Spawned {
  child: ChildProcess;
  /** stdout and stderr, as they came. */
  output(): string;
  /** stdout alone (a command's answer; logs go to stderr). */
  stdout(): string;
  exited: Promise<number | null>;
  /** SIGTERM, then SIGKILL after graceMs. */
  stop(graceMs?: number): Promise<number | null>;
}

/** Runs `graft ARGS` as a child process, collecting its output. */
export function spawnGraft(args: string[], env: NodeJS.ProcessEnv = {}): Spawned {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let out = '';
  let stdout = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    stdout += d.toString();
  });
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    output: () => out,
    stdout: () => stdout,
    exited,
    stop: (graceMs = 20_000) => stopProcess(child, graceMs),
  };
}

/** Runs `graft ARGS` to completion. */
export async function runGraft(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; output: string }> {
  const s = spawnGraft(args, env);
  const code = await s.exited;
  return { code, output: s.output() };
}

/** Polls fn until it returns a truthy value or the deadline passes. */
export async function waitFor<T>(fn: () => Promise<T | undefined | false>, timeoutMs: number, what: string): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
