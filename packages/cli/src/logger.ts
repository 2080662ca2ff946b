import pino, { type Logger } from 'pino';

/** Keys pino replaces with [Redacted]: credentials must never reach a log. */
export const REDACT_PATHS = [
  'pass',
  'password',
  'token',
  'seed',
  'nkey',
  'creds',
  '*.pass',
  '*.password',
  '*.token',
  '*.seed',
  '*.nkey',
  '*.creds',
  '*.*.pass',
  '*.*.password',
  '*.*.token',
  '*.*.seed',
];

/**
 * The root logger of a graft process: JSON lines (pino) on stderr, credentials redacted. Services
 * log at info; interactive commands at warn (their answers and progress say the rest).
 */
export function createLogger(opts: { level?: string; toStderr?: boolean; name?: string } = {}): Logger {
  return pino(
    {
      name: opts.name ?? 'graft',
      level: opts.level ?? process.env.GRAFT_LOG_LEVEL ?? 'info',
      redact: { paths: REDACT_PATHS, censor: '[Redacted]' },
      base: { pid: process.pid },
    },
    // Logs go to stderr, always: stdout is a command's answer (and a service has none).
    pino.destination({ fd: 2, sync: true }),
  );
}

/** A component's logger. */
export type Log = ReturnType<typeof createLogger>;
