import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { findNatsServer } from '@graft/protocol/testing';
import { ROOT } from '../helpers/fixtures.js';

/* deploy/setup.sh against the shipped nats-server config, checked by nats-server itself. */

/** nats-server's path, or undefined where it is not installed. */
const natsServer = (): string | undefined => {
  try {
    return findNatsServer();
  } catch {
    return undefined;
  }
};

describe('deploy - setup.sh and the shipped nats-server config', () => {
  it('deploy/setup.sh writes .env with passwords the shipped nats-server config accepts (hex ones can read as numbers)', (t) => {
    if (!natsServer()) return t.skip('nats-server not found');
    const dir = mkdtempSync(join(tmpdir(), 'graft-setup-'));
    const env = join(dir, '.env');
    const run = spawnSync('sh', [join(ROOT, 'deploy/setup.sh'), env], { encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    const vars = Object.fromEntries(
      readFileSync(env, 'utf8')
        .split('\n')
        .filter((l) => /^\w+=/.test(l))
        .map((l) => l.split(/=(.*)/s).slice(0, 2) as [string, string]),
    ) as Record<string, string>;
    const passwords = Object.entries(vars).filter(([k]) => k.endsWith('_PASSWORD'));
    assert.ok(passwords.length >= 5 && passwords.every(([, v]) => /^g[0-9a-f]{48}$/.test(v)), 'every password set, a letter then 48 hex digits');
    assert.equal(statSync(env).mode & 0o777, 0o600, 'readable by its owner only');
    const check = (pw: Record<string, string>) =>
      spawnSync(natsServer()!, ['-c', join(ROOT, 'deploy/nats/nats-server.conf'), '-t'], { encoding: 'utf8', env: { ...process.env, ...pw } });
    assert.equal(check(vars).status, 0, check(vars).stderr);
    // What `openssl rand -hex 24` can give, and why the script does not use it.
    const numeric = check({ ...vars, GRAFT_CLI_PASSWORD: '1e10aaaa0123456789abcdef0123456789abcdef01234567' });
    assert.notEqual(numeric.status, 0);
    assert.match(numeric.stderr + numeric.stdout, /could not be parsed/);
    const again = spawnSync('sh', [join(ROOT, 'deploy/setup.sh'), env], { encoding: 'utf8' });
    assert.equal(again.status, 1, 'an existing .env is kept');
    assert.match(again.stderr, /exists; keeping it \(pass --force/);
    rmSync(dir, { recursive: true, force: true });
  });

  it('setup.sh --tls-names writes a CA and a server certificate naming the addresses remote nodes use, and turns TLS on in .env', (t) => {
    if (spawnSync('openssl', ['version']).error) return t.skip('openssl not found');
    const dir = mkdtempSync(join(tmpdir(), 'graft-setup-tls-'));
    const deploy = join(dir, 'deploy');
    try {
      // A copy of deploy/ (setup.sh writes nats/tls/ beside itself).
      spawnSync('cp', ['-r', join(ROOT, 'deploy'), deploy]);
      spawnSync('rm', ['-rf', join(deploy, 'nats', 'tls', 'ca.crt'), join(deploy, '.env')]);
      const run = spawnSync('sh', [join(deploy, 'setup.sh'), '--tls-names', '10.1.2.3,broker.lan'], { encoding: 'utf8' });
      assert.equal(run.status, 0, run.stderr);
      const cert = spawnSync('openssl', ['x509', '-in', join(deploy, 'nats', 'tls', 'server.crt'), '-noout', '-text'], { encoding: 'utf8' }).stdout;
      for (const name of ['DNS:nats', 'DNS:localhost', 'IP Address:127.0.0.1', 'IP Address:10.1.2.3', 'DNS:broker.lan'])
        assert.ok(cert.includes(name), `the certificate names ${name}`);
      const verify = spawnSync('openssl', ['verify', '-CAfile', join(deploy, 'nats', 'tls', 'ca.crt'), join(deploy, 'nats', 'tls', 'server.crt')], {
        encoding: 'utf8',
      });
      assert.equal(verify.status, 0, verify.stdout + verify.stderr);
      const env = readFileSync(join(deploy, '.env'), 'utf8');
      assert.match(env, /^GRAFT_NATS_CONFIG=nats-server-tls\.conf$/m);
      assert.match(env, /^GRAFT_NATS_TLS_CA=\/etc\/graft\/tls\/ca\.crt$/m);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
