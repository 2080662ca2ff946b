import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ROOT } from '../helpers/fixtures.js';
import { runGraft } from '../helpers/process.js';

/* The command line's contract: a version, help per command, and a usage error that fits on the screen. */

describe('graft CLI - contract', () => {
  it('graft --version prints the version; graft help CMD prints that command\'s help', async () => {
    const { version } = JSON.parse(await readFile(join(ROOT, 'packages/cli/package.json'), 'utf8')) as { version: string };
    const v = await runGraft(['--version']);
    assert.equal(v.code, 0);
    assert.equal(v.output.trim(), `graft ${version}`);
    const h = await runGraft(['help', 'train']);
    assert.equal(h.code, 0);
    assert.match(h.output, /^graft train /);
  });

  it('a usage error is its one line and a pointer to the help, not the whole help', async () => {
    for (const args of [['train', '/no/such/folder'], ['publish', '.', '--vector-dtype', 'int8'], ['import', 'x.pb']]) {
      const r = await runGraft(args);
      assert.equal(r.code, 2, r.output);
      const lines = r.output.trim().split('\n');
      assert.equal(lines.length, 2, r.output);
      assert.match(lines[0], new RegExp(`^graft ${args[0]}: `));
      assert.equal(lines[1], `see graft ${args[0]} --help`);
    }
    const unknown = await runGraft(['nope']);
    assert.equal(unknown.code, 2);
    assert.equal(unknown.output.trim(), 'graft: unknown command "nope" (see graft --help)');
  });
});
