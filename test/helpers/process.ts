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

/**
 * Runs `graft ARGS` to completion. With deadlineMs, a command still running then is stopped
 * (SIGTERM, then SIGKILL) and its output returned with a line saying so, so a hang fails the test
 * with what the command printed instead of a bare test timeout.
 */
export async function runGraft(args: string[], env: NodeJS.ProcessEnv = {}, deadlineMs?: number): Promise<{ code: number | null; output: string }> {
  const s = spawnGraft(args, env);
  let late = false;
  const timer =
    deadlineMs === undefined
      ? undefined
      : setTimeout(() => {
          late = true;
          void s.stop(10_000);
        }, deadlineMs);
  const code = await s.exited;
  clearTimeout(timer);
  return { code, output: late ? `${s.output()}\n[test] graft ${args[0]} still running after ${deadlineMs} ms: stopped` : s.output() };
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
