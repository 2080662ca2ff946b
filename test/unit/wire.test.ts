import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ROOT } from '../helpers/fixtures.js';

/*
 * The wire apart from the runtime: the head (its classifier, training), the web bundle and
 * @graft/protocol/wire load no NATS module. A resolve hook in a child process records every module
 * the imports load.
 */

/** The URLs of every module loaded by importing `specifiers`, in a fresh process. */
function loadedBy(specifiers: string[]): string[] {
  const dir = mkdtempSync(join(tmpdir(), 'graft-wire-'));
  const log = join(dir, 'loaded.txt');
  try {
    const hooks = `import { appendFileSync } from 'node:fs'; export async function resolve(s, c, next) { const r = await next(s, c); appendFileSync(process.env.GRAFT_LOADED_LOG, r.url + '\\n'); return r; }`;
    const register = `import { register } from 'node:module'; register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(hooks)}));`;
    const body = specifiers.map((s) => `await import(${JSON.stringify(s)});`).join(' ');
    const r = spawnSync(process.execPath, ['--import', `data:text/javascript,${encodeURIComponent(register)}`, '--input-type=module', '-e', body], {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...process.env, GRAFT_LOADED_LOG: log },
      timeout: 120_000,
    });
    assert.equal(r.status, 0, r.stderr);
    return readFileSync(log, 'utf8').trim().split('\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('the wire apart from the runtime', () => {
  it("importing @graft/head and @graft/web loads no NATS module (the hook sees protocol's wire, not its bus)", () => {
    const loaded = loadedBy(['@graft/head', '@graft/web']);
    assert.ok(
      loaded.some((u) => u.includes('/packages/protocol/dist/wire.js')),
      "protocol's wire is what the head uses",
    );
    assert.ok(
      loaded.some((u) => u.includes('@tensorflow')),
      "the hook sees the packages' own imports",
    );
    assert.deepEqual(
      loaded.filter((u) => /@nats-io|\/packages\/protocol\/dist\/(bus|index)\.js/.test(u)),
      [],
    );
  });

  it('importing @graft/protocol does load the bus (so the check above can fail)', () => {
    assert.ok(loadedBy(['@graft/protocol']).some((u) => u.includes('@nats-io')));
  });
});
