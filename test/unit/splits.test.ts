import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManifestEntries, validateManifest, ManifestError } from '@graft/coordinator';
import { assignSplit } from '@graft/protocol/testing';
import { codecs } from '@graft/protocol/testing';

describe('coordinator - splits', () => {
  it('keeps every existing image in its set when images are added', () => {
    const before = Array.from({ length: 300 }, (_, i) => `cat/img_${i}.jpg`);
    const after = [...before, ...Array.from({ length: 300 }, (_, i) => `cat/new_${i}.jpg`)];
    const first = new Map(before.map((p) => [p, assignSplit(p)]));
    const second = new Map(after.map((p) => [p, assignSplit(p)]));
    for (const p of before) assert.equal(second.get(p), first.get(p), p);
  });

  it('spreads images about 80/10/10 by default', () => {
    const counts = { train: 0, validation: 0, test: 0 };
    for (let i = 0; i < 5000; i++) counts[assignSplit(`x/photo-${i}.jpg`)]++;
    assert.ok(counts.train > 3800 && counts.train < 4200, JSON.stringify(counts));
    assert.ok(counts.validation > 380 && counts.validation < 620, JSON.stringify(counts));
    assert.ok(counts.test > 380 && counts.test < 620, JSON.stringify(counts));
  });

  it('ignores the folder and anything after _nohash_, as retrain.py does', () => {
    for (let i = 0; i < 50; i++) {
      assert.equal(assignSplit(`a/p${i}_nohash_1.jpg`), assignSplit(`b/p${i}_nohash_2.jpg`));
    }
  });
});

describe('coordinator - manifest validation', () => {
  const sha = (c: string) => c.repeat(64);
  const base = () =>
    codecs.manifest.create({
      jobId: 'job1',
      name: 'x',
      classes: ['a', 'b'],
      images: [
        { sha256: sha('a'), label: 'a', path: 'a/1.jpg' },
        { sha256: sha('b'), label: 'b', path: 'b/1.jpg' },
      ],
      backbone: { id: 'auto' },
    });

  const check = (m: ReturnType<typeof base>) => validateManifest(m, ManifestEntries.of(m));

  it('accepts a good manifest', () => check(base()));

  it('lists an unknown class, a duplicate entry and a bad hash', () => {
    const m = base();
    m.images.push({ sha256: sha('c'), label: 'zebra', path: 'zebra/1.jpg', split: 0, sizeBytes: 0, source: '', originalSha256: '' });
    m.images.push({ sha256: sha('a'), label: 'a', path: 'a/1.jpg', split: 0, sizeBytes: 0, source: '', originalSha256: '' });
    m.images.push({ sha256: 'xyz', label: 'b', path: 'b/2.jpg', split: 0, sizeBytes: 0, source: '', originalSha256: '' });
    assert.throws(
      () => check(m),
      (e: Error) =>
        e instanceof ManifestError && /unknown class "zebra"/.test(e.message) && /a\/1.jpg: listed twice/.test(e.message) && /bad sha256/.test(e.message),
    );
  });
});
