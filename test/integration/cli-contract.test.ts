import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { CLI, ROOT } from '../helpers/fixtures.js';
import { retrainMobileNetGraph } from '../helpers/graphdef.js';
import { runGraft } from '../helpers/process.js';

/** stdout alone (logs go to stderr), and the exit code. */
function stdoutOf(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, GRAFT_LOG_LEVEL: 'info' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

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
    const noBroker = await runGraft(['status', '--nats', 'nats://127.0.0.1:1']);
    assert.equal(noBroker.code, 1);
    assert.match(noBroker.output, /^graft status: cannot connect to NATS at nats:\/\/127\.0\.0\.1:1: .*start a cluster with graft up, or pass --nats URL\)$/m, 'a missing broker says how to get one');
    const unknown = await runGraft(['nope']);
    assert.equal(unknown.code, 2);
    assert.equal(unknown.output.trim(), 'graft: unknown command "nope" (see graft --help)');
  });

  it('--json writes exactly one JSON document on stdout, logs go to stderr', { timeout: 120_000 }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'graft-json-'));
    try {
      const pb = join(dir, 'output_graph.pb');
      await writeFile(pb, retrainMobileNetGraph().bytes);
      await writeFile(join(dir, 'labels.txt'), 'a\nb\nc\n');
      const inspect = stdoutOf(['inspect', pb, '--json']);
      assert.equal(inspect.code, 0, inspect.stderr);
      assert.equal(JSON.parse(inspect.stdout).retrain.classes, 3, 'stdout is one JSON document');
      assert.match(inspect.stderr, /TensorFlow\.js backend/, 'the log line is on stderr');
      const imp = stdoutOf(['import', pb, '--labels', join(dir, 'labels.txt'), '--out', join(dir, 'm'), '--no-bundle']);
      assert.equal(imp.code, 0, imp.stderr);
      const photos = [join(dir, '1.jpg'), join(dir, '2.jpg')];
      for (const [i, p] of photos.entries()) await writeFile(p, await sharp({ create: { width: 20, height: 20, channels: 3, background: { r: 90 * i, g: 50, b: 200 } } }).jpeg().toBuffer());
      const two = stdoutOf(['classify', join(dir, 'm'), ...photos, '--json']);
      assert.equal(two.code, 0, two.stderr);
      const answers = JSON.parse(two.stdout) as { image: string }[];
      assert.deepEqual(answers.map((a) => a.image), photos, 'several images: one array');
      const one = JSON.parse(stdoutOf(['classify', join(dir, 'm'), photos[0], '--json']).stdout) as { image: string };
      assert.equal(one.image, photos[0], 'one image: one object');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
