import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ErrorCode, ProtocolError, Split, VectorDType, codecs, decodeVector, encodeVector, taskSubject, vectorKey } from '@graft/protocol';

describe('protocol - messages', () => {
  it('round-trips a manifest with every field', () => {
    const m = codecs.manifest.create({
      jobId: 'j1',
      datasetId: 'd1',
      name: 'pets',
      classes: ['cat', 'dog'],
      images: [{ sha256: 'a'.repeat(64), label: 'cat', split: Split.SPLIT_TEST, path: 'cat/1.jpg', sizeBytes: 1234 }],
      backbone: { id: 'custom', url: 'file:///m/model.json', bottleneck: 'pool', inputSize: 224, preprocess: 'symmetric' },
      training: { optimizer: 'adam', learningRate: 0.5, epochs: 5 },
      skipped: [{ path: 'notes.txt', reason: 'not an image' }],
      createdAtMs: 1_700_000_000_000,
      vectorDtype: VectorDType.VECTOR_DTYPE_FLOAT16,
    });
    const back = codecs.manifest.decode(codecs.manifest.encode(m));
    assert.deepEqual(back.toJSON(), m.toJSON());
    assert.equal(back.images[0].split, Split.SPLIT_TEST);
    assert.equal(back.createdAtMs, 1_700_000_000_000);
  });

  it('round-trips a vector batch with a per-image error', () => {
    const v = encodeVector(Float32Array.from([1, -2.5, 3]), VectorDType.VECTOR_DTYPE_FLOAT32);
    const b = codecs.vectorBatch.decode(
      codecs.vectorBatch.encode({
        jobId: 'j',
        taskId: 't',
        backboneFingerprint: 'f',
        vectors: [
          { sha256: 's1', vector: v, dim: 3 },
          { sha256: 's2', errorCode: ErrorCode.ERROR_CODE_DECODE_FAILED, errorMessage: 'bad' },
        ],
      }),
    );
    assert.deepEqual(Array.from(decodeVector(b.vectors[0].vector, 3, b.vectors[0].dtype)), [1, -2.5, 3]);
    assert.equal(b.vectors[1].errorCode, ErrorCode.ERROR_CODE_DECODE_FAILED);
  });

  it('names the type when bytes are not a message', () => {
    assert.throws(() => codecs.task.decode(Uint8Array.from([0xff, 0xff, 0xff, 0xff]), 'task on x'), (e: Error) => e instanceof ProtocolError && /task on x is not a valid ExtractionTask/.test(e.message));
  });

  it('float16 vectors stay within half precision of the original', () => {
    const x = Float32Array.from({ length: 500 }, (_, i) => Math.sin(i) * (i % 7) * 3.7);
    const back = decodeVector(encodeVector(x, VectorDType.VECTOR_DTYPE_FLOAT16), x.length, VectorDType.VECTOR_DTYPE_FLOAT16);
    for (let i = 0; i < x.length; i++) assert.ok(Math.abs(back[i] - x[i]) <= Math.abs(x[i]) * 1e-3 + 1e-4, `${x[i]} -> ${back[i]}`);
  });

  it('rejects vector bytes of the wrong length', () => {
    assert.throws(() => decodeVector(new Uint8Array(10), 3, VectorDType.VECTOR_DTYPE_FLOAT32), RangeError);
  });
});

describe('protocol - names', () => {
  it('builds subjects and keys from safe tokens only', () => {
    assert.equal(taskSubject('abc123'), 'graft.tasks.abc123');
    assert.equal(vectorKey('fp', 'ab'), 'fp.ab');
    assert.throws(() => taskSubject('a.b'), /invalid fingerprint/);
    assert.throws(() => vectorKey('fp', 'x>'), /invalid sha256/);
  });
});
