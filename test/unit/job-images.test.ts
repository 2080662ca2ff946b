import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { ManifestEntries, JobImages, ShaIndex, headerOf } from '@graft/coordinator';
import { Split, VectorDType, assignSplit, codecs } from '@graft/protocol/testing';

/* The coordinator's compact record of a job's images: ids once, entries counted, waiting as a bit. */

const sha = (c: string) => c.repeat(64);

describe('JobImages - what a job still waits for, without an object per image', () => {
  it('counts a photo listed twice as one id of two entries, and waits and settles each id once', () => {
    const images = [
      { sha256: sha('a'), path: 'x/1.jpg', label: 'x', split: Split.SPLIT_TRAIN, sizeBytes: 1, source: '', originalSha256: '' },
      { sha256: sha('a'), path: 'y/1.jpg', label: 'y', split: Split.SPLIT_TRAIN, sizeBytes: 1, source: '', originalSha256: '' },
      { sha256: sha('b'), path: 'x/2.jpg', label: 'x', split: Split.SPLIT_TEST, sizeBytes: 1, source: '', originalSha256: '' },
    ];
    const j = new JobImages(ManifestEntries.of({ images, classes: ['x', 'y'], training: {} }), {});
    assert.deepEqual([...j.all()], [sha('a'), sha('b')]);
    assert.equal(j.count, 2);
    assert.equal(j.entriesOf(sha('a')), 2);
    assert.equal(j.entriesOf(sha('c')), 0, "not the job's");
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
    const j = new JobImages(ManifestEntries.of({ images, classes: ['x'], training: {} }), { augment: 'flip', augmentCopies: 3 });
    assert.equal(j.augmented, 3);
    assert.deepEqual(
      [...j.all()],
      [sha('a'), `${sha('a')}_flip_0`, `${sha('a')}_flip_1`, `${sha('a')}_flip_2`, sha('b')],
      '2 photos and 3 copies of the training one',
    );
    assert.equal(j.count, 5);
    for (const id of [...j.all()]) j.wait(id);
    assert.equal(j.size, 5);
    assert.equal(j.settle(`${sha('a')}_flip_1`), 1);
    for (const id of [
      `${sha('b')}_flip_0`,
      `${sha('a')}_flip_3`,
      `${sha('a')}_crop_0`,
      `${sha('a')}_flip_01`,
      `${sha('c')}_flip_0`,
      sha('A'),
      `${sha('a')}x`,
      '',
    ])
      assert.equal(
        j.entriesOf(id) + j.settle(id) + Number(j.has(id)),
        0,
        `${id.slice(60)} is not the job's: a test photo's copy, a copy past the count, another spec, another spelling, another photo`,
      );
    assert.deepEqual([...j.keys()], [sha('a'), `${sha('a')}_flip_0`, `${sha('a')}_flip_2`, sha('b')]);
  });
});

describe('ShaIndex - SHA-256s in typed arrays, numbered as added', () => {
  it('numbers each hash once, finds it by bytes or hex, past many growths', () => {
    const index = new ShaIndex();
    const hashes = Array.from({ length: 50_000 }, (_, i) => createHash('sha256').update(String(i)).digest());
    hashes.forEach((h, i) => assert.equal(index.add(h, 0), i));
    assert.equal(index.add(Buffer.concat([Buffer.alloc(7), hashes[123]]), 7), 123, 'a hash added again keeps its number, wherever its bytes lie');
    assert.equal(index.size, 50_000);
    for (const i of [0, 1, 16, 4095, 49_999]) {
      assert.equal(index.findHex(hashes[i].toString('hex')), i);
      assert.equal(index.hex(i), hashes[i].toString('hex'));
    }
    assert.equal(index.find(createHash('sha256').update('absent').digest(), 0), -1);
    for (const text of [hashes[5].toString('hex').toUpperCase(), hashes[5].toString('hex').slice(1), `${hashes[5].toString('hex').slice(0, 63)}g`, ''])
      assert.equal(index.findHex(text), -1, JSON.stringify(text));
  });

  it("indexes a column's distinct hashes where they lie, numbered by first appearance", () => {
    const h = (i: number) => createHash('sha256').update(`col ${i}`).digest();
    const order = [3, 1, 3, 2, 1, 0, 3];
    const column = Buffer.concat(order.map(h));
    const { index, numbers } = ShaIndex.distinct(column, order.length);
    assert.deepEqual([...numbers], [0, 1, 0, 2, 1, 3, 0]);
    assert.equal(index.size, 4);
    assert.deepEqual(
      [0, 1, 2, 3].map((n) => index.hex(n)),
      [3, 1, 2, 0].map((i) => h(i).toString('hex')),
    );
    assert.equal(index.findHex(h(2).toString('hex')), 2);
    assert.equal(index.find(h(9), 0), -1);
    assert.throws(() => index.add(h(9), 0), /takes no hashes of its own/);
  });

  it('hashes that share their first bytes (as a hostile manifest could write them) are told apart by all 32', () => {
    const index = new ShaIndex();
    const crafted = Array.from({ length: 2000 }, (_, i) => {
      const b = Buffer.alloc(32, 0xab);
      b.writeUInt32BE(i, 28);
      return b;
    });
    crafted.forEach((b, i) => assert.equal(index.add(b, 0), i));
    crafted.forEach((b, i) => assert.equal(index.find(b, 0), i));
  });
});

/** FNV-1a of a string's UTF-8, as the list hashes paths: to find two paths that meet. */
function fnv(s: string): number {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(s)) h = Math.imul(h ^ b, 0x01000193);
  return h >>> 0;
}

describe("ManifestEntries - a job's entries in columns, checked as they come", () => {
  const entry = (path: string, label = 'x', sha = createHash('sha256').update(path).digest('hex')) => ({
    sha256: sha,
    path,
    label,
    split: Split.SPLIT_UNSPECIFIED,
    sizeBytes: 1,
    source: '',
    originalSha256: '',
  });

  it("gives back every entry as added, past the columns' first growth, in any script", () => {
    const images = Array.from({ length: 5000 }, (_, i) => ({
      ...entry(`${i % 2 ? 'x' : 'y'}/照片-${i}-${'é'.repeat(i % 40)}.jpg`, i % 2 ? 'x' : 'y'),
      source: i % 3 ? `list.txt:${i}` : '',
    }));
    const list = ManifestEntries.of({ images, classes: ['y', 'x'], training: {} });
    assert.equal(list.length, 5000);
    assert.deepEqual(list.problems, []);
    for (const i of [0, 1, 1023, 1024, 2047, 4999]) {
      assert.equal(list.path(i), images[i].path);
      assert.equal(list.sha(i), images[i].sha256);
      assert.equal(list.source(i), images[i].source);
      assert.equal(list.label(i), i % 2);
      assert.equal(list.split(i), assignSplit(images[i].path));
    }
    assert.deepEqual([...list.perClass], [2500, 2500]);
    assert.deepEqual(list.entriesOf(new Set([images[7].sha256])), [{ sha256: images[7].sha256, path: images[7].path, source: images[7].source }]);
  });

  it('finds a path listed twice, also among paths whose hashes meet', () => {
    const first = new Map<number, string>();
    let pair: [string, string] | undefined;
    for (let i = 0; !pair; i++) {
      const p = `p/${i}.jpg`;
      const other = first.get(fnv(p));
      if (other) pair = [other, p];
      else first.set(fnv(p), p);
    }
    const [a, b] = pair;
    const list = ManifestEntries.of({
      images: [entry(a), entry(b), entry('c.jpg'), entry(b, 'x', 'b'.repeat(64)), entry(a)],
      classes: ['x', 'y'],
      training: {},
    });
    assert.deepEqual(
      list.problems,
      [`${b}: listed twice`, `${a}: listed twice`],
      'two paths that share a hash are two paths; each listed again is a duplicate',
    );
  });

  it('names each bad entry, up to a bound, then counts the rest', () => {
    const images = Array.from({ length: 1500 }, (_, i) => entry(`z/${i}.jpg`, 'zebra'));
    images.push(entry('q.jpg', 'x', 'not-a-hash'), entry(`${'d/'.repeat(2100)}long.jpg`));
    const list = ManifestEntries.of({ images, classes: ['x', 'y'], training: {} });
    assert.equal(list.problems.length, 1001);
    assert.equal(list.problems[0], 'z/0.jpg: unknown class "zebra"');
    assert.equal(list.problems.at(-1), 'and 502 more problems with entries');
    assert.equal(list.length, 1502, 'every entry kept, so indices match the manifest');
  });
});

describe('headerOf - a decoded manifest without its list', () => {
  it('keeps every field as the decoded message reads it, unset ones as their defaults, and drops the list', () => {
    const bytes = codecs.manifest.encode(
      codecs.manifest.create({
        jobId: 'j',
        classes: ['a', 'b'],
        images: [{ sha256: 'a'.repeat(64), label: 'a', path: 'a/1.jpg' }],
        vectorDtype: VectorDType.VECTOR_DTYPE_FLOAT16,
      }),
    );
    const decoded = codecs.manifest.decode(bytes, 'test');
    const h = headerOf(decoded) as typeof decoded;
    assert.equal(h.jobId, 'j');
    assert.deepEqual(h.classes, ['a', 'b']);
    assert.equal(h.vectorDtype, VectorDType.VECTOR_DTYPE_FLOAT16);
    assert.equal(h.name, decoded.name, 'an unset name reads as its default, as on the message');
    assert.equal(h.maxSide, decoded.maxSide);
    assert.ok(!Object.prototype.hasOwnProperty.call(h, 'images') && (h.images?.length ?? 0) === 0, 'no list of its own');
    assert.equal(decoded.images.length, 1, 'the message itself is left whole');
  });
});
