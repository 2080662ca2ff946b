import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { augmentParams, augmentedId, decodeAugmented, decodeImage, isAugmentedId, parseAugmentSpec, parseImageId } from '@graft/vision';
import { vectorKey } from '@graft/protocol/testing';

async function photo(): Promise<{ bytes: Uint8Array; sha: string }> {
  const w = 160;
  const h = 120;
  const px = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) px.set([(x * 3) % 256, (y * 5) % 256, ((x + y) * 2) % 256], (y * w + x) * 3);
  const bytes = new Uint8Array(
    await sharp(px, { raw: { width: w, height: h, channels: 3 } })
      .png()
      .toBuffer(),
  );
  return { bytes, sha: createHash('sha256').update(bytes).digest('hex') };
}

const maxDiff = (a: Uint8Array, b: Uint8Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

describe('augmented copies', () => {
  it('names specs canonically and refuses unknown augmentations', () => {
    assert.equal(parseAugmentSpec('flip,crop'), 'crop-flip');
    assert.equal(parseAugmentSpec('crop, flip,flip'), 'crop-flip');
    assert.equal(parseAugmentSpec('brightness,scale,crop,flip'), 'brightness-crop-flip-scale');
    assert.throws(() => parseAugmentSpec('flip,rotate'), /unknown augmentation "rotate": use brightness, crop, flip, scale/);
    assert.throws(() => parseAugmentSpec(''), /no augmentation named/);
  });

  it('gives each copy an id and a cache key apart from its photo and from other specs', () => {
    const sha = 'a'.repeat(64);
    const id = augmentedId(sha, 'crop-flip', 3);
    assert.deepEqual(parseImageId(id), { sha256: sha, augment: { spec: 'crop-flip', variant: 3 } });
    assert.deepEqual(parseImageId(sha), { sha256: sha });
    assert.equal(parseImageId(`${sha}_crop_x`), undefined);
    assert.equal(parseImageId('../etc'), undefined);
    assert.ok(isAugmentedId(id) && !isAugmentedId(sha));
    const keys = new Set([
      vectorKey('f00d', sha),
      vectorKey('f00d', id),
      vectorKey('f00d', augmentedId(sha, 'flip', 3)),
      vectorKey('f00d', augmentedId(sha, 'crop-flip', 4)),
    ]);
    assert.equal(keys.size, 4, 'no collision between plain, specs and variants');
  });

  it('is deterministic: the same copy gives the same pixels; other variants give others', async () => {
    const { bytes, sha } = await photo();
    const a = await decodeAugmented(bytes, 32, sha, 'brightness-crop-flip-scale', 2);
    const b = await decodeAugmented(bytes, 32, sha, 'brightness-crop-flip-scale', 2);
    assert.deepEqual(a, b);
    assert.equal(a.length, 32 * 32 * 3);
    const c = await decodeAugmented(bytes, 32, sha, 'brightness-crop-flip-scale', 3);
    assert.ok(maxDiff(a, c) > 10, 'another variant is another picture');
    assert.ok(maxDiff(a, await decodeImage(bytes, 32)) > 10, 'a copy is not the photo');
  });

  it('flip mirrors and brightness scales, as their draws say', async () => {
    const { bytes, sha } = await photo();
    const plain = await decodeImage(bytes, 32);
    let flipped = -1;
    for (let k = 0; k < 10 && flipped < 0; k++) if (augmentParams(sha, 'flip', k).flip) flipped = k;
    const f = await decodeAugmented(bytes, 32, sha, 'flip', flipped);
    const mirror = new Uint8Array(plain.length);
    for (let y = 0; y < 32; y++)
      for (let x = 0; x < 32; x++) for (let ch = 0; ch < 3; ch++) mirror[(y * 32 + x) * 3 + ch] = plain[(y * 32 + (31 - x)) * 3 + ch];
    assert.ok(maxDiff(f, mirror) <= 1, `a flipped copy is the mirror image (max difference ${maxDiff(f, mirror)})`);
    const p = augmentParams(sha, 'brightness', 0);
    const br = await decodeAugmented(bytes, 32, sha, 'brightness', 0);
    assert.ok(p.brightness !== 1 && p.keep === 1 && !p.flip);
    assert.ok(
      maxDiff(
        br,
        plain.map((v) => Math.min(255, Math.round(v * p.brightness))),
      ) <= 1,
    );
  });
});
