import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateSampleSet } from '@graft/cli';
import { freePort, listJobs, openBus } from '@graft/protocol/testing';
import { initBackend } from '@graft/vision';
import { CLI } from '../helpers/fixtures.js';
import { writeConvModel } from '../helpers/models.js';
import { runGraft, spawnGraft, waitFor } from '../helpers/process.js';

/*
 * The first ten minutes, part two: what a new user ran into, each as it was reproduced. One local
 * cluster per data folder, the same job on a rerun, and errors that say the fix before anything starts.
 */

/** stdout and stderr apart, and the exit code. */
function streams(args: string[], env: NodeJS.ProcessEnv = {}): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** nats-server processes running on a store under this folder. */
function natsServersOn(dir: string): number {
  const ps = spawnSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).stdout;
  return ps.split('\n').filter((l) => /nats-server/.test(l) && l.includes(dir)).length;
}

describe('the first ten minutes, part two', () => {
  let work: string;
  let data: string;
  let model: string;
  before(async () => {
    await initBackend();
    work = await mkdtemp(join(tmpdir(), 'graft-first-'));
    data = await generateSampleSet(join(work, 'shapes'), 6, 71, ['circle', 'square']);
    await mkdir(join(work, 'm'), { recursive: true });
    model = await writeConvModel(join(work, 'm'), { layers: 3, filters: 16 });
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it(
    '1. graft up, then graft train on the same data folder: one nats-server, one job on the running cluster; a second graft up refuses',
    { timeout: 240_000 },
    async () => {
      const home = join(work, 'home1');
      const port = await freePort();
      const env = { GRAFT_HOME: home };
      const up = spawnGraft(['up', '--workers', '1', '--port', String(port)], env);
      try {
        await waitFor(async () => /graft cluster up/.test(up.output()), 60_000, 'graft up to start');
        const train = await runGraft(['train', data, '--backbone', model, '--epochs', '3', '--out', join(work, 'm1'), '--no-bundle'], env);
        assert.equal(train.code, 0, train.output);
        assert.match(train.output, /using the cluster already running on .*home1\/cluster \(graft up, pid \d+, NATS at nats:\/\/127\.0\.0\.1:\d+\)/);
        assert.doesNotMatch(train.output, /started a local cluster/);
        assert.equal(natsServersOn(join(home, 'cluster')), 1, 'one nats-server on the folder');
        const bus = await openBus({ servers: `nats://127.0.0.1:${port}` }, { create: false });
        try {
          assert.equal((await listJobs(bus)).length, 1, 'the job ran on the running cluster');
        } finally {
          await bus.close();
        }
        const second = await runGraft(['up', '--workers', '1', '--port', String(await freePort())], env);
        assert.equal(second.code, 1, second.output);
        assert.match(
          second.output,
          /the data folder .*home1\/cluster is in use by a running cluster \(graft up, pid \d+, NATS at .*\): use it \(graft publish DIR --nats nats:\/\/127\.0\.0\.1:\d+\), stop it first, or give another --data/,
        );
      } finally {
        await up.stop(20_000);
      }
      // Its processes' logs went to stderr: graft up's stdout holds none.
      assert.ok(/"level"/.test(up.output()), 'the processes logged');
      assert.doesNotMatch(up.stdout(), /"level"/);
    },
  );

  it('2. Ctrl-C, then the same graft train again: it follows the interrupted job, no second one', { timeout: 300_000 }, async () => {
    const home = join(work, 'home2');
    const env = { GRAFT_HOME: home };
    const args = ['train', data, '--backbone', model, '--epochs', '10000', '--patience', '0', '--out', join(work, 'm2'), '--no-bundle', '--workers', '1'];
    const first = spawnGraft(args, env);
    const id = await waitFor(async () => /job (j\w+): \d+ images/.exec(first.output())?.[1], 120_000, 'the job to be published');
    await waitFor(async () => /training: /.test(first.output()) || undefined, 180_000, 'training to start');
    first.child.kill('SIGINT');
    assert.equal(await first.exited, 130, first.output());
    const again = spawnGraft(args, env);
    try {
      const line = await waitFor(
        async () => /job (j\w+): following the unfinished job of these photos and options/.exec(again.output()),
        120_000,
        `the rerun to find the job\n${again.output()}`,
      );
      assert.equal(line![1], id, 'the same job');
    } finally {
      again.child.kill('SIGINT');
      await again.exited;
    }
  });

  it('3-6. problems found before anything starts, as usage errors that name the fix', { timeout: 60_000 }, async () => {
    const dir = join(work, 'three');
    await mkdir(join(dir, 'emptyclass'), { recursive: true });
    for (const c of ['circle', 'square']) {
      await mkdir(join(dir, c), { recursive: true });
      await writeFile(join(dir, c, 'a.jpg'), await readFile(join(data, c, `${c}_000.jpg`)));
    }
    // Dry run and real run agree on an empty class folder: both refuse it.
    const dry = streams(['train', dir, '--dry-run']);
    assert.equal(dry.code, 1, dry.stdout);
    assert.match(dry.stdout, /class "emptyclass" has no images/);
    const real = streams(['train', dir, '--data', join(work, 'never')]);
    assert.equal(real.code, 2, real.stderr);
    assert.match(real.stderr, /class folder "emptyclass" has no images: put photos in it, or remove it/);
    assert.equal(natsServersOn(join(work, 'never')), 0, 'no cluster was started for it');
    // --out naming a file, a file as the photos, an unknown backbone: before any cluster.
    const file = join(work, 'notadir.txt');
    await writeFile(file, 'x');
    const cases: [string[], RegExp][] = [
      [['train', data, '--out', file], /--out .*notadir\.txt is a file: name a folder for the model \(graft export JOB DIR/],
      [['train', file], /notadir\.txt is a file: graft train takes a folder \(one sub-folder per class\) or a \.csv, \.tsv or \.jsonl list/],
      [['train', data, '--backbone', 'nosuchnet'], /--backbone: unknown backbone "nosuchnet"/],
      [['train', join(data, 'circle')], /has 0 class folders with images: a classifier needs at least 2/],
      [['train', data, '--epoch', '5'], /^graft train: unknown option --epoch \(did you mean --epochs\?\)$/m],
      [['train', data, '--epochs', '-3'], /--epochs -3: a value that starts with '-' must be joined to its option: --epochs=-3/],
    ];
    for (const [args, reason] of cases) {
      const r = streams([...args, '--data', join(work, 'never')]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, reason, args.join(' '));
      assert.equal(r.stderr.trim().split('\n').length, 2, `one line and the pointer to the help: ${r.stderr}`);
    }
    const typo = streams(['trian']);
    assert.equal(typo.code, 2);
    assert.match(typo.stderr, /unknown command "trian" \(did you mean graft train\? see graft --help\)/);
    const help = streams(['help', 'nosuchcommand']);
    assert.equal(help.code, 2, 'help for a command that does not exist is a usage error');
    assert.match(help.stderr, /unknown command "nosuchcommand"/);
  });

  it('6. classify: a folder or a missing photo is one line naming it', { timeout: 180_000 }, async () => {
    const out = join(work, 'm6');
    const t = await runGraft(['train', data, '--backbone', model, '--epochs', '2', '--out', out, '--no-bundle', '--data', join(work, 'home6')], {
      GRAFT_HOME: join(work, 'home6'),
    });
    assert.equal(t.code, 0, t.output);
    const dir = streams(['classify', out, data]);
    assert.equal(dir.code, 1);
    assert.match(dir.stderr, /shapes is a folder: name image files \(graft classify MODEL_DIR a\.jpg b\.jpg\)/);
    assert.doesNotMatch(dir.stderr, /EISDIR/);
    const missing = streams(['classify', out, join(work, 'nope.jpg')]);
    assert.match(missing.stderr, /nope\.jpg: no such file \(check the path\)/);
    // One JSON shape: an array, for one photo as for several; every count in a status, zeros too.
    const one = streams(['classify', out, join(data, 'circle', 'circle_000.jpg'), '--json']);
    assert.ok(Array.isArray(JSON.parse(one.stdout)), one.stdout);
  });

  it(
    '7, 9. --json is one document on train and publish; a run that lost over 10 % of its photos ends with exit 3 and says why; a private URL names its flag; --refresh says what it dropped',
    { timeout: 240_000 },
    async () => {
      const dir = join(work, 'nine');
      await mkdir(join(dir, 'photos'), { recursive: true });
      const rows = ['file_name,label'];
      for (const c of ['circle', 'square'])
        for (let i = 0; i < 3; i++) {
          await writeFile(join(dir, 'photos', `${c}${i}.jpg`), await readFile(join(data, c, `${c}_00${i}.jpg`)));
          rows.push(`photos/${c}${i}.jpg,${c}`);
        }
      rows.push('http://127.0.0.1:9/never.jpg,circle');
      await writeFile(join(dir, 'list.csv'), `${rows.join('\n')}\n`);
      const home = join(work, 'home9');
      const r = streams(['train', join(dir, 'list.csv'), '--backbone', model, '--epochs', '2', '--out', join(work, 'm9'), '--no-bundle', '--json'], {
        GRAFT_HOME: home,
      });
      assert.equal(r.code, 3, r.stderr);
      assert.match(r.stderr, /127\.0\.0\.1 is a private or local address \(pass --allow-private-urls to fetch it\)/);
      assert.match(r.stderr, /warning: 1 of 7 files \(14 %\) were left out before extraction/);
      const doc = JSON.parse(r.stdout) as {
        job: { state: string; counts: { cached: number; failed: number; total: number } };
        model: string;
        onnx: { file?: string };
      };
      assert.equal(doc.job.state, 'done');
      assert.deepEqual(
        { cached: doc.job.counts.cached, failed: doc.job.counts.failed, total: doc.job.counts.total },
        { cached: 0, failed: 0, total: 6 },
        'zero counts are there too',
      );
      assert.equal(doc.onnx.file, 'model.onnx');
      // The report rendered again without the cluster says what it lost.
      const report = join(work, 'm9', 'report.html');
      await writeFile(report, `${await readFile(report, 'utf8')}<img src="data:image/jpeg;base64,AA==">`);
      const refresh = streams(['report', join(work, 'm9'), '--refresh']);
      assert.equal(refresh.code, 0, refresh.stderr);
      assert.match(
        refresh.stderr,
        /rendered with 0 of the \d+ thumbnails it had \(the photos are in a cluster's image store: --nats URL of that cluster keeps them\)/,
      );
    },
  );
});
