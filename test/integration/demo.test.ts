import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ROOT } from '../helpers/fixtures.js';
import { runGraft } from '../helpers/process.js';

/*
 * What npm start runs, as a newcomer sees it: the bundled photos, the embedded backbone and a local
 * cluster, from a fresh graft home. The README's promise about it is checked against the run.
 */

describe('graft demo - the first run', () => {
  it('trains on the bundled photos to at least 80 % on its held-out test photos and says how', { timeout: 300_000 }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'graft-demo-'));
    try {
      const r = await runGraft(['demo', '--out', join(dir, 'model'), '--workers', '2', '--no-bundle'], { GRAFT_HOME: join(dir, 'home'), GRAFT_LOG_LEVEL: 'warn' });
      assert.equal(r.code, 0, r.output);
      const m = /test accuracy: top-1 ([\d.]+)%, top-5 [\d.]+% on (\d+) images/.exec(r.output);
      assert.ok(m, r.output);
      const [top1, tested] = [Number(m[1]), Number(m[2])];
      assert.ok(top1 >= 80, `the demo reaches ${top1} % top-1: at least 80 % is what the README promises`);
      assert.match(r.output, /held-out photo \(shoes the model never saw, [^)]*\): shoes /);
      assert.match(r.output, /How: 6 of clothing-small's 10 classes/);
      const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
      assert.ok(readme.includes(`at least 80 % top-1 on its ${tested} test photos`), `the README says what the demo is tested to do (${tested} test photos)`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
