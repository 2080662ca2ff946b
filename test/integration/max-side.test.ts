import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { publishDataset } from '@graft/cli';
import { JobState, codecs, manifestSubject, readImage, STREAMS } from '@graft/protocol/testing';
import { TestCluster, countsOf } from '../helpers/cluster.js';
import { runGraft } from '../helpers/process.js';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** A photo-like JPEG of w x h with some texture (so it is megabytes, as phone photos are). */
async function bigPhoto(w: number, h: number, seed: number, orientation?: number): Promise<Buffer> {
  const px = Buffer.alloc(w * h * 3);
  let s = seed;
  for (let i = 0; i < px.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    px[i] = ((i / 3) % w) * (200 / w) + ((s >>> 24) & 31);
  }
  const img = sharp(px, { raw: { width: w, height: h, channels: 3 } });
  return (orientation ? img.withMetadata({ orientation }) : img).jpeg({ quality: 90 }).toBuffer();
}

describe('graft publish --max-side: large photos stored as copies of the size backbones use', () => {
  const c = new TestCluster();
  let dir: string;
  let cache: string;
  let files: Record<string, Buffer>;

  before(async () => {
    await c.start({ workers: 1 });
    dir = join(c.work, 'photos');
    cache = join(c.work, 'shrunk');
    files = {
      'a/phone.jpg': await bigPhoto(3000, 2000, 1, 6), // EXIF: rotate 90 degrees when shown
      'a/small.jpg': await bigPhoto(200, 150, 2),
      'b/phone.jpg': await bigPhoto(2400, 1800, 3),
      'b/small.jpg': await bigPhoto(300, 200, 4),
    };
    for (const [p, b] of Object.entries(files)) {
      await mkdir(join(dir, p.split('/')[0]), { recursive: true });
      await writeFile(join(dir, p), b);
    }
  });
  after(() => c.stop());

  it('stores shrunk, upright copies of the large ones, says so in the manifest, and extracts them', async () => {
    const model = await c.tinyModel(8);
    const p = await publishDataset(c.bus, dir, { progress: false, backbone: model, maxSide: 512, shrinkCacheDir: cache, training: { epochs: 2 } });
    assert.equal(p.shrunk, 2);
    const msg = await c.bus.jsm.streams.getMessage(STREAMS.manifests, { last_by_subj: manifestSubject(p.jobId) });
    const m = codecs.manifest.decode(msg!.data, 'manifest');
    assert.equal(m.maxSide, 512);
    const byPath = new Map(m.images.map((i) => [i.path, i]));
    for (const [path, bytes] of Object.entries(files)) {
      const e = byPath.get(path)!;
      if (path.endsWith('small.jpg')) {
        assert.equal(e.sha256, sha(bytes), `${path} is stored as it is`);
        assert.equal(e.originalSha256, '');
        continue;
      }
      assert.equal(e.originalSha256, sha(bytes), `${path}: the original's hash is kept`);
      assert.notEqual(e.sha256, e.originalSha256);
      const read = await readImage(c.bus, e.sha256);
      const stored = read.ok ? read.bytes : undefined;
      assert.equal(sha(stored!), e.sha256, 'the store holds the copy the manifest names');
      assert.equal(e.sizeBytes, stored!.byteLength);
      const meta = await sharp(stored!).metadata();
      assert.ok(stored!.byteLength < bytes.byteLength / 5, `${path}: ${bytes.byteLength} bytes became ${stored!.byteLength}`);
      if (path === 'a/phone.jpg') assert.deepEqual([meta.width, meta.height, meta.orientation ?? 1], [341, 512, 1], 'upright: the EXIF rotation is applied');
      else assert.deepEqual([meta.width, meta.height], [512, 384]);
    }
    const s = await c.waitForJob(p.jobId, 120_000);
    assert.equal(s.state, JobState.JOB_STATE_DONE, c.logs());
    assert.deepEqual(countsOf(s), { total: 4, cached: 0, extracted: 4, failed: 0 });
  });

  it('publishing again shrinks nothing twice and gets the same copies (cached by original and size)', async () => {
    const before = (await readdir(join(cache, '512'))).sort();
    const model = await c.tinyModel(8);
    const p = await publishDataset(c.bus, dir, { progress: false, backbone: model, maxSide: 512, shrinkCacheDir: cache, training: { epochs: 2 } });
    assert.equal(p.uploaded, 0, 'every copy is already stored');
    assert.deepEqual((await readdir(join(cache, '512'))).sort(), before);
    const copy = await readFile(join(cache, '512', `${sha(files['b/phone.jpg'])}.jpg`));
    const s = await c.waitForJob(p.jobId, 120_000);
    assert.equal(countsOf(s).cached, 4, 'vectors are keyed by what is stored: all cached');
    // Without --max-side the originals are other images: their vectors are computed apart.
    const plain = await publishDataset(c.bus, dir, { progress: false, backbone: model, training: { epochs: 2 } });
    const again = await c.waitForJob(plain.jobId, 120_000);
    assert.deepEqual(countsOf(again), { total: 4, cached: 2, extracted: 2, failed: 0 });
    assert.ok(copy.byteLength > 0);
  });

  it('refuses a max side too small for any backbone', async () => {
    const r = await runGraft(['publish', dir, '--max-side', '16', '--nats', c.url]);
    assert.equal(r.code, 2);
    assert.match(r.output, /--max-side must be an integer >= 64/);
  });
});
