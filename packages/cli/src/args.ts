import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { BusOptions } from '@graft/protocol';

/** A usage problem: printed with the command's help, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export type Options = NonNullable<ParseArgsConfig['options']>;

/** Flags every command that talks to NATS takes. Credentials also come from the environment. */
export const NATS_OPTIONS: Options = {
  nats: { type: 'string' },
  'nats-user': { type: 'string' },
  'nats-tls-ca': { type: 'string' },
};

export const NATS_HELP = `  --nats URL          NATS server(s), comma separated (default $GRAFT_NATS_URL or nats://127.0.0.1:4222)
  --nats-user USER    user name; the password comes from $GRAFT_NATS_PASSWORD (never a flag)
  --nats-tls-ca FILE  CA certificate for TLS connections
                      ($GRAFT_NATS_TOKEN sets a token)`;

export type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

export function parse(argv: string[], options: Options, positionals = true): { values: Values; positionals: string[] } {
  try {
    const r = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: positionals, strict: true });
    return { values: r.values as Values, positionals: r.positionals };
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

export function busOptions(v: Values, name: string): BusOptions {
  const env = process.env;
  return {
    servers: (v.nats as string | undefined) ?? env.GRAFT_NATS_URL ?? 'nats://127.0.0.1:4222',
    name,
    user: (v['nats-user'] as string | undefined) ?? env.GRAFT_NATS_USER,
    pass: env.GRAFT_NATS_PASSWORD,
    token: env.GRAFT_NATS_TOKEN,
    tls: v['nats-tls-ca'] ? { caFile: v['nats-tls-ca'] as string } : undefined,
  };
}

export function int(v: Values, key: string, min = 0): number | undefined {
  const raw = v[key];
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${key} must be an integer >= ${min}, got ${JSON.stringify(raw)}`);
  return n;
}

export function num(v: Values, key: string): number | undefined {
  const raw = v[key];
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`--${key} must be a positive number, got ${JSON.stringify(raw)}`);
  return n;
}

export function str(v: Values, key: string): string | undefined {
  return v[key] as string | undefined;
}
