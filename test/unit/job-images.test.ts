import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { JobImages } from '@graft/coordinator';
import { Split } from '@graft/protocol';

/* The coordinator's compact record of a job's images: ids once, entries counted, waiting as a bit. */

const sha = (c: string) => c.repeat(64);

describe('JobImages - what a job still waits for, without an object per image', () => {
  it('counts a photo listed twice as one id of two entries, and waits and settles each id once', () => {
    const images = [
      { sha256: sha('a'), path: 'x/1.jpg', label: 'x', split: Split.SPLIT_TRAIN, sizeBytes: 1, source: '', originalSha256: '' },
      { sha256: sha('a'), path: 'y/1.jpg', label: 'y', split: Split.SPLIT_TRAIN, sizeBytes: 1, source: '', originalSha256: '' },
      { sha256: sha('b'), path: 'x/2.jpg', label: 'x', split: Split.SPLIT_TEST, sizeBytes: 1, source: '', originalSha256: '' },
    ];
    const j = new JobImages({ images, training: {} });
    assert.deepEqual(j.all(), [sha('a'), sha('b')]);
    assert.equal(j.entriesOf(sha('a')), 2);
    assert.equal(j.entriesOf(sha('c')), 0, 'not the job\'s');
    assert.equal(j.size, 0);
    j.wait(sha('a'));
    j.wait(sha('a'));
    j.wait(sha('c'));
    assert.equal(j.size, 1, 'waiting twice is waiting once; an unknown id is not waited for');
    assert.deepEqual([...j.keys()], [sha('a')]);
    assert.equal(j.has(sha('a')), true);
    assert.equal(j.settle(sha('a')), 2, 'settling gives its entries');
    assert.equal(j.settle(sha('a')), 0, 'an answer that comes twice counts once');
    assert.equal(j.size, 0);
  });

  it('augmented copies of training photos only, each its own id', () => {
    const images = [
      { sha256: sha('a'), path: 'x/1.jpg', label: 'x', split: Split.SPLIT_TRAIN, sizeBytes: 1, source: '', originalSha256: '' },
      { sha256: sha('b'), path: 'x/2.jpg', label: 'x', split: Split.SPLIT_VALIDATION, sizeBytes: 1, source: '', originalSha256: '' },
    ];
    const j = new JobImages({ images, training: { augment: 'flip', augmentCopies: 3 } });
    assert.equal(j.augmented, 3);
    assert.equal(j.all().length, 5, '2 photos and 3 copies of the training one');
    assert.ok(j.all().slice(1, 4).every((id) => id.startsWith(sha('a'))));
  });
});
