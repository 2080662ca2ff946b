import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { assignSplit } from '@graft/protocol/testing';
import { ROOT } from '../helpers/fixtures.js';
import { onnxChecker } from '../helpers/onnx-check.js';
import { runGraft } from '../helpers/process.js';

type Answer = { image: string; predictions: { label: string; probability: number }[] };

/*
 * What npm start runs, as a newcomer sees it: the bundled photos, the embedded backbone and a local
 * cluster, from a fresh graft home. The README's promise about it is checked against the run.
 */

describe('graft demo - the first run', () => {
  it(
    'trains on the bundled photos to at least 80 % on its held-out test photos and says how; its model.onnx answers as graft classify does on every test photo',
    { timeout: 300_000 },
    async (t) => {
      const dir = await mkdtemp(join(tmpdir(), 'graft-demo-'));
      try {
        const r = await runGraft(['demo', '--out', join(dir, 'model'), '--workers', '2', '--no-bundle'], {
          GRAFT_HOME: join(dir, 'home'),
          GRAFT_LOG_LEVEL: 'warn',
        });
        assert.equal(r.code, 0, r.output);
        const m = /test accuracy: top-1 ([\d.]+)%, top-5 [\d.]+% on (\d+) images/.exec(r.output);
        assert.ok(m, r.output);
        const [top1, tested] = [Number(m[1]), Number(m[2])];
        assert.ok(top1 >= 80, `the demo reaches ${top1} % top-1: at least 80 % is what the README promises`);
        assert.match(r.output, /held-out photo \(shoes the model never saw, [^)]*\): shoes /);
        assert.match(r.output, /How: 6 of clothing-small's 10 classes/);
        const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
        assert.ok(readme.includes(`at least 80 % top-1 on its ${tested} test photos`), `the README says what the demo is tested to do (${tested} test photos)`);
        // Take it to the phone: model.onnx and labels.txt, the same answers as graft classify.
        const model = join(dir, 'model');
        const classes = (await readFile(join(model, 'labels.txt'), 'utf8')).trim().split('\n');
        assert.deepEqual(classes, ['dress', 'hat', 'pants', 'shoes', 'shorts', 't-shirt']);
        const samples = join(ROOT, 'packages/cli/samples/clothing');
        const tests: string[] = [];
        for (const c of classes)
          for (const f of await readdir(join(samples, c))) if (assignSplit(`${c}/${f}`, 15, 20) === 'test') tests.push(join(samples, c, f));
        assert.equal(tests.length, tested, 'the test photos, found as the demo split them');
        const classify = async (...extra: string[]) => {
          const out = await runGraft(['classify', model, ...tests, '--json', '--top', '6', ...extra], {
            GRAFT_HOME: join(dir, 'home'),
            GRAFT_LOG_LEVEL: 'warn',
          });
          assert.equal(out.code, 0, out.output);
          return JSON.parse(out.output.trim().split('\n').pop()!) as Answer[];
        };
        const [graft, onnx] = [await classify(), await classify('--runtime', 'onnx')];
        for (const [i, a] of graft.entries()) {
          assert.equal(onnx[i].predictions[0].label, a.predictions[0].label, `${a.image}: the same top-1`);
          for (const p of a.predictions)
            assert.ok(Math.abs(onnx[i].predictions.find((q) => q.label === p.label)!.probability - p.probability) <= 1e-4, `${a.image} ${p.label}`);
        }
        const checked = onnxChecker(join(model, 'model.onnx'));
        if (checked === 'absent') t.diagnostic('python3-onnx is not installed: its checker did not read model.onnx');
        else assert.equal(checked, undefined, `python3-onnx's checker refuses model.onnx: ${checked}`);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  );
});
