import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ManifestEntries, loadJobVectors, resolveCoordinatorOptions, validateManifest } from '@graft/coordinator';
import { ROOT } from '../helpers/fixtures.js';
import { runGraft } from '../helpers/process.js';
import { startTestNats, type TestNats } from '../helpers/nats.js';
import { VectorDType, cacheVector, encodeVector, openBus, readManifest, type BusHandles as Bus } from '@graft/protocol/testing';
import { DEFAULT_ALLOW_MODEL_FILES, fetchBackbone, parseBackbone } from '@graft/vision';

/*
 * One policy, one answer: the CLI's dry run and the coordinator split a job the same way (they call
 * the same code), and every process that loads a model a stranger named refuses local files by default.
 */

const SAMPLES = join(ROOT, 'packages', 'cli', 'samples', 'clothing');

/** Per class: [train, validation, test], from the dry run's table. */
function dryRunCounts(output: string): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const m of output.matchAll(/^ {2}(\S+)\s+(\d+)\s+(\d+)\s+(\d+)$/gm)) out.set(m[1], [Number(m[2]), Number(m[3]), Number(m[4])]);
  return out;
}

describe('policies shared by the CLI and the coordinator', () => {
  let nats: TestNats;
  let bus: Bus;
  before(async () => {
    nats = await startTestNats();
    bus = await openBus({ servers: nats.url });
  });
  after(async () => {
    await bus?.close();
    await nats?.cleanup();
  });

  for (const [name, flags] of [
    ['no split percentages', []],
    ['other percentages', ['--validation-percent', '25', '--test-percent', '5']],
  ] as const) {
    it(`a manifest with ${name} is split alike by graft publish --dry-run and by the coordinator`, async () => {
      const dry = await runGraft(['publish', SAMPLES, '--dry-run', ...flags]);
      assert.equal(dry.code, 0, dry.output);
      const planned = dryRunCounts(dry.output);
      assert.equal(planned.size, 6, dry.output);
      const pub = await runGraft(['publish', SAMPLES, '--nats', nats.url, ...flags], { GRAFT_LOG_LEVEL: 'warn' });
      assert.equal(pub.code, 0, pub.output);
      const jobId = pub.output.trim().split('\n').at(-1)!; // publish prints the job id last
      const manifest = (await readManifest(bus, jobId))!;
      const list = ManifestEntries.of(manifest);
      validateManifest(manifest, list);
      if (!flags.length)
        assert.equal(manifest.training?.validationPercent ?? undefined, undefined, 'the manifest carries no percentages: both sides use the defaults');
      // Every image has a (fake) vector, so the coordinator's split of the manifest is the whole story.
      const fp = 'aaaaaaaaaaaaaaaa';
      for (const img of manifest.images)
        await cacheVector(bus, fp, img.sha256, {
          vector: encodeVector(new Float32Array([1, 2]), VectorDType.VECTOR_DTYPE_FLOAT32),
          dim: 2,
          dtype: VectorDType.VECTOR_DTYPE_FLOAT32,
        });
      const sets = await loadJobVectors(bus, manifest, list, fp, (_w, op) => op());
      const trained = new Map<string, number[]>();
      for (const [i, split] of (['train', 'validation', 'test'] as const).entries()) {
        for (const y of sets[split].y) {
          const c = manifest.classes[y];
          const row = trained.get(c) ?? [0, 0, 0];
          row[i]++;
          trained.set(c, row);
        }
      }
      assert.deepEqual(Object.fromEntries([...trained].sort()), Object.fromEntries([...planned].sort()));
      const held = [...planned.values()].reduce((a, r) => a + r[1] + r[2], 0);
      assert.ok(held > 0, 'something is held out');
    });
  }

  it('refuses local model files by default everywhere: the library, the coordinator, and the same constant', async () => {
    assert.equal(DEFAULT_ALLOW_MODEL_FILES, false);
    assert.equal(resolveCoordinatorOptions().allowModelFiles, DEFAULT_ALLOW_MODEL_FILES);
    const dir = await mkdtemp(join(tmpdir(), 'graft-policy-'));
    try {
      await writeFile(join(dir, 'model.json'), JSON.stringify({ modelTopology: {}, weightsManifest: [] }));
      await assert.rejects(fetchBackbone(parseBackbone(`file://${dir}/model.json`)), /local file.*--allow-model-files/);
      await assert.rejects(fetchBackbone(parseBackbone(`file://${dir}/model.json`), { allowFiles: false }), /local file/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
