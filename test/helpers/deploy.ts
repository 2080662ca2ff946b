import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ROOT } from './fixtures.js';

/* The shipped deploy config's roles, for tests that run against exactly what users deploy. */

export const PASSWORDS = {
  GRAFT_COORDINATOR_PASSWORD: 'coord-s3cret-Xq1',
  GRAFT_WORKER_PASSWORD: 'worker-s3cret-Zp9',
  GRAFT_CLI_PASSWORD: 'cli-s3cret-Wm4',
  GRAFT_MONITOR_PASSWORD: 'mon-s3cret-Kd7',
};

/** The authorization block of deploy/nats/nats-server.conf, exactly as deployed. */
export async function deployedAuthorization(): Promise<string> {
  const conf = await readFile(join(ROOT, 'deploy/nats/nats-server.conf'), 'utf8');
  const start = conf.indexOf('authorization {');
  let depth = 0;
  for (let i = start; i < conf.length; i++) {
    if (conf[i] === '{') depth++;
    if (conf[i] === '}' && --depth === 0) return conf.slice(start, i + 1);
  }
  throw new Error('no authorization block in deploy/nats/nats-server.conf');
}
