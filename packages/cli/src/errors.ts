/*
 * System errors (a missing file, a folder where a file was expected, a port in use...) as one line
 * that names the input and what to do, instead of Node's "ENOENT: no such file or directory, open
 * 'x'". Only the command line prints them.
 */

const REASONS: Record<string, (e: NodeJS.ErrnoException & { address?: string; port?: number }) => string> = {
  ENOENT: (e) => `${e.path}: no such file or folder (check the path)`,
  ENOTDIR: (e) => `${e.path}: part of this path is a file, not a folder`,
  EISDIR: (e) => `${e.path}: a folder where a file was expected`,
  EACCES: (e) => `${e.path ?? e.address}: permission denied`,
  EPERM: (e) => `${e.path ?? e.address}: not permitted`,
  EADDRINUSE: (e) => `${e.address}:${e.port} is already in use (another graft or program listens there: choose another with --port)`,
  ENOSPC: (e) => `${e.path ?? 'disk'}: no space left on the device`,
};

/** The error's message, translated when it is a system error graft knows. */
export function describeError(err: unknown): string {
  const e = err as NodeJS.ErrnoException & { address?: string; port?: number };
  const reason = e?.code && REASONS[e.code];
  if (reason && (e.path || e.address)) return reason(e);
  return (err as Error)?.message ?? String(err);
}
