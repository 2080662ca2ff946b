import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { USER_MODEL_POLICY, initBackend, inspectModel, loadBackbone, parseBackbone } from '@graft/vision';
import { doc } from '../helpers/docs.js';

/* What graft inspect says of a catalogue backbone, what graft does with it, and what docs/backbones.md says: one story. */

describe('catalogue backbones - inspect, the loaded backbone and the docs agree', () => {
  for (const id of ['mobilenet_v2_100', 'mobilenet_v2_035', 'inception_v3_mixed5']) {
    it(`${id}: inspect names the cut graft makes, and the docs' table its dimension`, { timeout: 120_000 }, async () => {
      await initBackend();
      const r = await inspectModel(id, USER_MODEL_POLICY);
      const b = await loadBackbone(parseBackbone(id));
      b.dispose();
      assert.equal(r.catalogue?.id, id);
      assert.equal(r.bottleneckCandidates[0], r.catalogue?.bottleneck, 'the cut is the first candidate');
      if (parseBackbone(id).bottleneck) assert.equal(r.catalogue?.bottleneck, b.info.bottleneck);
      const row = doc('backbones.md')
        .split('\n')
        .find((l) => l.startsWith(`| \`${id}\``) || (id === 'mobilenet_v2_100' && l.startsWith('| `auto` (default) = `mobilenet_v2_100`')));
      assert.ok(row, `docs/backbones.md has a row for ${id}`);
      assert.match(row, new RegExp(`${b.info.dim}-d`), `the row says ${b.info.dim}-d`);
      if (b.info.bottleneck) assert.match(row, new RegExp(`\`${b.info.bottleneck}\``), `the row names the cut ${b.info.bottleneck}`);
    });
  }
});
