import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fetchBackbone, initBackend, localModelUpload, parseBackbone } from '@graft/vision';
import { writeTinyModel } from '../helpers/models.js';

/* An uploaded model is read back blob by blob, each checked against its SHA-256: nothing else passes for it. */

describe('uploaded models - each blob is the bytes its name says', () => {
  let dir: string;
  let url: string;
  before(async () => {
    await initBackend();
    dir = await mkdtemp(join(tmpdir(), 'graft-upload-'));
    url = await writeTinyModel(dir);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('reads an upload back as the same model, with no file access, and refuses a blob replaced with other bytes', async () => {
    const up = await localModelUpload(url);
    assert.equal(up.blobs.length, 2, 'the weights, and model.json naming them by SHA-256');
    const store = new Map(up.blobs.map((b) => [b.sha256, b.bytes]));
    const read = async (sha: string) => store.get(sha) ?? Promise.reject(new Error('not in the cluster'));
    const spec = { ...parseBackbone(url), uploadSha256: up.sha256 };
    const local = await fetchBackbone(parseBackbone(url), { allowFiles: true });
    const uploaded = await fetchBackbone(spec, { readUpload: read }); // files not allowed: the upload is read, not the path
    assert.equal(uploaded.files.weightsSha256, local.files.weightsSha256);
    assert.deepEqual(uploaded.files.json.modelTopology, local.files.json.modelTopology);

    await assert.rejects(fetchBackbone(spec), /model upload [0-9a-f]{64} is read from a cluster's image store, and this process has none/);
    const weights = up.blobs.find((b) => b.what === 'weights')!;
    store.set(weights.sha256, new Uint8Array(weights.bytes.byteLength));
    await assert.rejects(
      fetchBackbone(spec, { readUpload: read }),
      new RegExp(`uploaded model file ${weights.sha256} holds other bytes than its SHA-256 names`),
    );
    await assert.rejects(
      fetchBackbone({ ...spec, url: 'https://example.com/model.json' }, { readUpload: read }),
      /an upload stands for a local file:\/\/ model only/,
    );
  });
});
