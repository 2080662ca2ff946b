import assert from 'node:assert/strict';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import sharp from 'sharp';
import { decodeImage, initBackend, loadBackbone, parseBackbone, USER_MODEL_POLICY } from '@graft/vision';
import { SHARED, sharedSkip } from '../helpers/fixtures.js';

describe('vision - the shared ImageNet backbones', { skip: sharedSkip('models') }, () => {
  before(() => initBackend());

  it('MobileNetV2-0.35 loads offline and yields 1280-d vectors', async () => {
    const b = await loadBackbone(parseBackbone(join(SHARED, 'models/mobilenet_v2_0.35_224'), { preprocess: 'symmetric' }), USER_MODEL_POLICY);
    assert.equal(b.info.inputSize, 224);
    assert.equal(b.info.dim, 1280);
    const img = await sharp({ create: { width: 300, height: 200, channels: 3, background: '#c33' } })
      .jpeg()
      .toBuffer();
    const [v] = await b.embed([await decodeImage(img, 224)]);
    assert.ok(v.every(Number.isFinite) && v.some((x) => x !== 0));
    b.dispose();
  });

  it('Darknet tiny cut at leaky_re_lu_14 yields 512-d vectors', async () => {
    const b = await loadBackbone(parseBackbone(join(SHARED, 'models/darknet_tiny_imagenet'), { bottleneck: 'leaky_re_lu_14' }), USER_MODEL_POLICY);
    assert.equal(b.info.dim, 512);
    assert.equal(b.info.inputSize, 224);
    b.dispose();
  });
});
