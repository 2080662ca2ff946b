import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateSampleSet } from '@graft/cli';
import { freePort } from '@graft/protocol/testing';
import { ROOT } from '../helpers/fixtures.js';
import { waitFor } from '../helpers/process.js';

/*
 * graft as a user installs it: `npm run pack` makes the tarball, `npm install -g` puts it in an
 * empty prefix, and the installed `graft` runs from a folder outside the repository, finding its
 * embedded model and its own code without the checkout. The third-party packages come from npm's
 * cache (filled by npm ci) or the registry.
 */

describe('installable graft - npm pack, npm install -g, used from any folder', () => {
  let dir: string;
  let graft: string;
  const env = () => ({ ...process.env, GRAFT_HOME: join(dir, 'home'), GRAFT_LOG_LEVEL: 'warn', PATH: `${join(dir, 'prefix', 'bin')}:${process.env.PATH}` });
  /** Runs the installed graft in the user's folder (outside the repository). */
  const run = (args: string[]) => spawnSync('graft', args, { cwd: join(dir, 'user'), env: env(), encoding: 'utf8', timeout: 180_000 });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'graft-install-'));
    const tarball = execFileSync(process.execPath, [join(ROOT, 'scripts', 'pack.mjs'), join(dir, 'pack')], { encoding: 'utf8' }).trim();
    assert.match(tarball, /graft-\d+\.\d+\.\d+\.tgz$/);
    // As the README says for a machine without a GPU: onnxruntime-node's CUDA download skipped, its CPU binaries used.
    execFileSync(
      'npm',
      [
        'install',
        '-g',
        '--onnxruntime-node-install=skip',
        '--prefix',
        join(dir, 'prefix'),
        '--prefer-offline',
        '--no-audit',
        '--no-fund',
        '--loglevel',
        'error',
        tarball,
      ],
      { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'], timeout: 300_000 },
    );
    await generateSampleSet(join(dir, 'user', 'photos'), 6, 1, ['circle', 'square']);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('graft --version and graft help CMD work from the PATH', async () => {
    const version = run(['--version']);
    assert.equal(version.status, 0, version.stderr);
    const cli = JSON.parse(await readFile(join(ROOT, 'packages', 'cli', 'package.json'), 'utf8')) as { version: string };
    assert.equal(version.stdout.trim(), `graft ${cli.version}`);
    assert.match(run(['help', 'classify']).stdout, /^graft classify MODEL_DIR IMAGE/);
  });

  it('graft train on a small folder with the embedded model, then graft classify, outside the repository', { timeout: 300_000 }, () => {
    const train = run(['train', 'photos', '--out', 'model', '--workers', '1', '--no-bundle', '--epochs', '20']);
    assert.equal(train.status, 0, `${train.stdout}\n${train.stderr}`);
    assert.match(
      train.stdout,
      /backbone +mobilenet_v2_100 \(1280-d, fingerprint [0-9a-f]{16}\), run on onnxruntime\/cpu/,
      'the embedded model, found inside the installed package, on ONNX Runtime',
    );
    assert.match(train.stdout, /model written to .*graft-install-[^/]+\/user\/model/);
    const classify = run(['classify', 'model', join('photos', 'square', 'square_000.jpg'), '--json']);
    assert.equal(classify.status, 0, classify.stderr);
    const [answer] = JSON.parse(classify.stdout) as { image: string; predictions: { label: string }[] }[];
    assert.deepEqual(answer.predictions.map((t) => t.label).sort(), ['circle', 'square'], 'one JSON document naming both classes');
  });

  it(
    "the installed graft, as the README's first run goes on: graft up, then graft train on the same data folder (one nats-server, one job), and a Ctrl-C rerun (one job)",
    { timeout: 300_000 },
    async () => {
      const port = await freePort();
      const data = join(dir, 'home', 'up-cluster');
      const up = spawn('graft', ['up', '--workers', '1', '--port', String(port), '--data', data], {
        cwd: join(dir, 'user'),
        env: env(),
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let upOut = '';
      up.stderr!.on('data', (d: Buffer) => (upOut += d.toString()));
      try {
        await waitFor(async () => /graft cluster up/.test(upOut), 60_000, 'graft up to start');
        const train = run(['train', 'photos', '--out', 'model-up', '--no-bundle', '--epochs', '5', '--data', data]);
        assert.equal(train.status, 0, train.stderr);
        assert.match(train.stderr, /using the cluster already running on/);
        const ps = spawnSync('ps', ['-eo', 'args'], { encoding: 'utf8' })
          .stdout.split('\n')
          .filter((l) => /nats-server/.test(l) && l.includes(data));
        assert.equal(ps.length, 1, 'one nats-server on the data folder');
        // Ctrl-C mid-job, then the same command again: it follows the interrupted job.
        const long = ['train', 'photos', '--out', 'model-long', '--no-bundle', '--epochs', '10000', '--patience', '0', '--data', data];
        const first = spawn('graft', long, { cwd: join(dir, 'user'), env: env(), stdio: ['ignore', 'pipe', 'pipe'] });
        let firstOut = '';
        first.stderr!.on('data', (d: Buffer) => (firstOut += d.toString()));
        const id = await waitFor(async () => /job (j\w+): \d+ images/.exec(firstOut)?.[1], 120_000, 'the long job to be published');
        await waitFor(async () => /training: /.test(firstOut) || undefined, 120_000, 'its training to start');
        first.kill('SIGINT');
        await new Promise((r) => first.once('exit', r));
        const again = spawn('graft', long, { cwd: join(dir, 'user'), env: env(), stdio: ['ignore', 'pipe', 'pipe'] });
        let againOut = '';
        again.stderr!.on('data', (d: Buffer) => (againOut += d.toString()));
        const followed = await waitFor(
          async () => /job (j\w+): following the unfinished job/.exec(againOut)?.[1],
          120_000,
          `the rerun to follow the job\n${againOut}`,
        );
        assert.equal(followed, id, 'one job');
        again.kill('SIGINT');
        await new Promise((r) => again.once('exit', r));
      } finally {
        up.kill('SIGINT');
        await new Promise((r) => up.once('exit', r));
      }
    },
  );
});
