import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, symlink, writeFile, mkdir } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { zipSync } from 'fflate';
import { fetchBackbone, isPrivateAddress, parseBackbone, redactUrl, USER_MODEL_POLICY } from '@graft/vision';
import { serveModelFolder } from '@graft/web';
import { freePort } from '@graft/protocol/testing';
import { ROOT } from '../../helpers/fixtures.js';
import { startTestNats, type TestNats } from '../../helpers/nats.js';
import { PASSWORDS, deployedAuthorization } from '../../helpers/deploy.js';
import { runGraft, spawnGraft, waitFor } from '../../helpers/process.js';

/* The edges of graft a hostile file, page, URL or neighbour reaches: archives, serve, credentials, metrics, ports, pages. */

/** GET with an explicit Host header (fetch will not send another host's name). */
function get(port: number, path: string, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers: { host } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

/** The local address a TCP port listens on, from /proc/net/tcp (hex, as the kernel writes it). */
async function listenAddress(port: number): Promise<string | undefined> {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  for (const line of (await readFile('/proc/net/tcp', 'utf8')).split('\n').slice(1)) {
    const [, local, , state] = line.trim().split(/\s+/);
    if (local?.endsWith(`:${hexPort}`) && state === '0A') {
      const hex = local.split(':')[0];
      return [3, 2, 1, 0].map((i) => parseInt(hex.slice(i * 2, i * 2 + 2), 16)).join('.');
    }
  }
  return undefined;
}

describe('hostile edges', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'graft-edges-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('archives: only the first matching member is inflated, counted against the cap as it comes out; a bomb is refused', async () => {
    // Bytes that compress about 2x, as real weights do (zeros compress 1000x: a bomb).
    const weights = (mb: number) => randomBytes(mb * 1024 * 1024).map((b) => b & 15);
    const cap = 5 * 1024 * 1024;
    // A second matching member whose compressed bytes are damaged: a reader that inflates every
    // match (as the old one did) fails on it; one that takes the first match never reads it.
    const zip = zipSync({ 'a/model.pb': weights(1), 'b/model.pb': new Uint8Array(8 * 1024 * 1024) }, { level: 9 });
    const second = Buffer.from(zip).indexOf('b/model.pb') + 'b/model.pb'.length + 40;
    zip.fill(0xff, second, second + 200);
    await writeFile(join(dir, 'two.zip'), zip);
    await assert.rejects(
      fetchBackbone(parseBackbone(`file://${dir}/two.zip#model.pb`), { ...USER_MODEL_POLICY, maxBytes: cap }),
      (err: Error) => !/damaged|limit|bomb|readable zip/.test(err.message) && /GraphDef|truncated|graph/i.test(err.message),
    );
    await writeFile(join(dir, 'big.zip'), zipSync({ 'model.pb': weights(6) }, { level: 9 }));
    await assert.rejects(
      fetchBackbone(parseBackbone(`file://${dir}/big.zip#model.pb`), { ...USER_MODEL_POLICY, maxBytes: cap }),
      /model\.pb is over the 5242880-byte limit/,
    );
    await writeFile(join(dir, 'bomb.zip'), zipSync({ 'model.pb': new Uint8Array(30 * 1024 * 1024) }, { level: 9 }));
    await assert.rejects(
      fetchBackbone(parseBackbone(`file://${dir}/bomb.zip#model.pb`), USER_MODEL_POLICY),
      /inflates over 200x: refused as a decompression bomb/,
    );
    // A .tgz: the whole tar counts against the cap.
    const header = Buffer.alloc(512);
    header.write('model.pb', 0);
    header.write('0000644\0', 100);
    header.write(`${(6 * 1024 * 1024).toString(8).padStart(11, '0')}\0`, 124);
    header.write('0', 156);
    await writeFile(join(dir, 'big.tgz'), gzipSync(Buffer.concat([header, Buffer.from(weights(6))])));
    await assert.rejects(
      fetchBackbone(parseBackbone(`file://${dir}/big.tgz#model.pb`), { ...USER_MODEL_POLICY, maxBytes: cap }),
      /decompresses to over the 5242880-byte limit/,
    );
  });

  it('URLs: private and local addresses are recognised, credentials never shown', () => {
    for (const ip of [
      '127.0.0.1',
      '10.1.2.3',
      '172.20.0.1',
      '192.168.1.1',
      '169.254.169.254',
      '100.64.0.1',
      '0.0.0.0',
      '::1',
      'fd00::1',
      'fe80::1',
      '::ffff:127.0.0.1',
      'not-an-ip',
    ])
      assert.equal(isPrivateAddress(ip), true, ip);
    for (const ip of ['8.8.8.8', '1.1.1.1', '2606:4700::1111', '::ffff:8.8.8.8']) assert.equal(isPrivateAddress(ip), false, ip);
    assert.equal(redactUrl('https://alice:s3cret@example.org/x.jpg'), 'https://***:***@example.org/x.jpg');
    assert.equal(redactUrl('https://example.org/x.jpg'), 'https://example.org/x.jpg');
  });

  it('graft serve follows no link out of its folder and answers only its own host names', async () => {
    const folder = join(dir, 'model');
    await mkdir(folder, { recursive: true });
    await writeFile(join(folder, 'report.html'), '<!doctype html><p>ok</p>');
    await symlink('/etc/passwd', join(folder, 'passwd.txt'));
    const served = await serveModelFolder(folder, { port: 0 });
    const port = Number(new URL(served.url).port);
    try {
      assert.equal(await get(port, '/report.html', `127.0.0.1:${port}`), 200);
      assert.equal(await get(port, '/report.html', `localhost:${port}`), 200);
      assert.equal(await get(port, '/passwd.txt', `127.0.0.1:${port}`), 403, 'a link out of the folder is refused');
      assert.equal(await get(port, '/report.html', `evil.example:${port}`), 421, "another site's name (DNS rebinding) is refused");
    } finally {
      await served.close();
    }
  });

  describe('processes', () => {
    let nats: TestNats;
    before(async () => {
      Object.assign(process.env, PASSWORDS);
      nats = await startTestNats(await deployedAuthorization());
    });
    after(async () => nats?.cleanup());

    it('credentials in a NATS URL log in, and are never printed', async () => {
      const url = nats.url.replace('nats://', `nats://coordinator:${PASSWORDS.GRAFT_COORDINATOR_PASSWORD}@`);
      const ok = await runGraft(['init', '--nats', url], { GRAFT_LOG_LEVEL: 'debug' });
      assert.equal(ok.code, 0, ok.output);
      assert.ok(!ok.output.includes(PASSWORDS.GRAFT_COORDINATOR_PASSWORD), 'the password is not in the logs');
      const wrong = await runGraft(['status', '--nats', url.replace(String(nats.port), String(await freePort()))]);
      assert.notEqual(wrong.code, 0);
      assert.ok(!wrong.output.includes(PASSWORDS.GRAFT_COORDINATOR_PASSWORD), `the password is not in the error: ${wrong.output}`);
    });

    it('graft up refuses a port already in use, and hands its children their connection through the environment', { timeout: 120_000 }, async () => {
      const taken = await runGraft(['up', '--port', String(nats.port), '--workers', '1', '--data', join(dir, 'up1')]);
      assert.notEqual(taken.code, 0);
      assert.match(taken.output, new RegExp(`client port 127\\.0\\.0\\.1:${nats.port} is in use .* choose another with --port`));
      assert.doesNotMatch(taken.output, /cluster up/);
      const url = nats.url.replace('nats://', `nats://coordinator:${PASSWORDS.GRAFT_COORDINATOR_PASSWORD}@`);
      const up = spawnGraft(['up', '--nats', url, '--workers', '1', '--data', join(dir, 'up2')]);
      try {
        const own = await waitFor(
          async () => {
            const out: string[] = [];
            for (const pid of await readdir('/proc')) {
              if (!/^\d+$/.test(pid)) continue;
              const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
              if (cmd.includes('main.js') && /\0(worker|coordinator)\0/.test(cmd)) out.push(cmd);
            }
            return out.length >= 2 ? out : undefined;
          },
          60_000,
          `graft up's children\n${up.output()}`,
        );
        for (const cmd of own)
          assert.ok(!cmd.includes(PASSWORDS.GRAFT_COORDINATOR_PASSWORD) && !cmd.includes('nats://'), `a child's argv: ${cmd.replace(/\0/g, ' ')}`);
      } finally {
        await up.stop(20_000);
      }
    });

    it('metrics listen on loopback unless told otherwise', { timeout: 60_000 }, async () => {
      const port = await freePort();
      const w = spawnGraft(['worker', '--nats', nats.url, '--metrics-port', String(port)], {
        GRAFT_NATS_USER: 'worker',
        GRAFT_NATS_PASSWORD: PASSWORDS.GRAFT_WORKER_PASSWORD,
        GRAFT_METRICS_ADDRESS: '',
      });
      try {
        assert.equal(await waitFor(() => listenAddress(port), 30_000, `the worker's metrics\n${w.output()}`), '127.0.0.1');
      } finally {
        await w.stop(10_000);
      }
      const port2 = await freePort();
      const w2 = spawnGraft(['worker', '--nats', nats.url, '--metrics-port', String(port2), '--metrics-address', '0.0.0.0'], {
        GRAFT_NATS_USER: 'worker',
        GRAFT_NATS_PASSWORD: PASSWORDS.GRAFT_WORKER_PASSWORD,
      });
      try {
        assert.equal(await waitFor(() => listenAddress(port2), 30_000, `the worker's metrics\n${w2.output()}`), '0.0.0.0');
      } finally {
        await w2.stop(10_000);
      }
    });
  });
});
