import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ROOT } from '../helpers/fixtures.js';

/*
 * One Node.js baseline, said everywhere and accepted by the dependencies: package.json's engines,
 * the README, CI's check, the Dockerfiles' images, and every locked package's own engines.
 */

const BASELINE = [20, 19];

/** The lowest Node version a package's engines range names (">= 22.x", ">=18", "^20.19.0 || >=22"): [major, minor]. */
function lowest(range: string): [number, number] | undefined {
  const versions = [...range.matchAll(/(\d+)(?:\.(\d+|x))?(?:\.(?:\d+|x))?/g)].map(
    (m) => [Number(m[1]), m[2] && m[2] !== 'x' ? Number(m[2]) : 0] as [number, number],
  );
  return versions.sort((a, b) => a[0] - b[0] || a[1] - b[1])[0];
}

const atLeast = (v: [number, number], base: number[]) => v[0] < base[0] || (v[0] === base[0] && v[1] <= base[1]);

describe('the Node.js baseline', () => {
  it('package.json, the README, CI and the images say the same baseline', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { engines: { node: string } };
    assert.equal(pkg.engines.node, '>=20.19');
    assert.match(readFileSync(join(ROOT, 'README.md'), 'utf8'), /Node\.js 20\.19 or later/);
    assert.match(readFileSync(join(ROOT, '.ci/run'), 'utf8'), /graft needs Node\.js 20\.19 or later/);
    for (const f of ['Dockerfile.cpu', 'Dockerfile.gpu'])
      assert.match(readFileSync(join(ROOT, 'deploy/docker', f), 'utf8'), /node:22-/, `${f}: a Node at or above the baseline`);
  });

  it('every locked package accepts the baseline, but the one whose code graft does not run (nsfwjs: its model files only)', () => {
    const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { engines?: { node?: string } | string[] }> };
    const refused: string[] = [];
    for (const [path, p] of Object.entries(lock.packages)) {
      const range = p.engines && !Array.isArray(p.engines) ? p.engines.node : undefined;
      const low = range ? lowest(range) : undefined;
      if (low && !atLeast(low, BASELINE)) refused.push(`${path.replace(/^.*node_modules\//, '')} (${range})`);
    }
    assert.deepEqual(refused, ['nsfwjs (22.13.0)']);
  });
});
