import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ErrorCode,
  ProtocolError,
  Split,
  VectorDType,
  codecs,
  decodeHalf,
  decodeVector,
  encodeHalf,
  encodeVector,
  halfVectorOf,
  taskSubject,
  toHalf,
  vectorKey,
} from '@graft/protocol/testing';

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
    assert.throws(
      () => codecs.task.decode(Uint8Array.from([0xff, 0xff, 0xff, 0xff]), 'task on x'),
      (e: Error) => e instanceof ProtocolError && /task on x is not a valid ExtractionTask/.test(e.message),
    );
  });

  it('float16 vectors stay within half precision of the original', () => {
    const x = Float32Array.from({ length: 500 }, (_, i) => Math.sin(i) * (i % 7) * 3.7);
    const back = decodeVector(encodeVector(x, VectorDType.VECTOR_DTYPE_FLOAT16), x.length, VectorDType.VECTOR_DTYPE_FLOAT16);
    for (let i = 0; i < x.length; i++) assert.ok(Math.abs(back[i] - x[i]) <= Math.abs(x[i]) * 1e-3 + 1e-4, `${x[i]} -> ${back[i]}`);
  });

  it('half floats: each of the 65,536 bit patterns decodes to a value that encodes back to it (NaN stays NaN)', () => {
    const bits = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const values = decodeHalf(bits);
    let nans = 0;
    for (let h = 0; h < 65536; h++) {
      if (Number.isNaN(values[h])) {
        nans++;
        assert.ok(Number.isNaN(decodeHalf(Uint16Array.of(toHalf(values[h])))[0]), `NaN ${h.toString(16)}`);
      } else assert.equal(toHalf(values[h]), h, `0x${h.toString(16)} = ${values[h]}`);
    }
    assert.equal(nans, 2 * 1023, 'exponent all ones with a mantissa');
    assert.deepEqual([...decodeHalf(encodeHalf([1, -2.5, 65504, 1e6, 2 ** -24]))], [1, -2.5, 65504, Infinity, 2 ** -24]);
  });

  it('a cached vector as half floats: the float16 bytes bit for bit, a float32 one rounded to its nearest', () => {
    const x = Float32Array.from({ length: 64 }, (_, i) => Math.cos(i) * 7);
    const wire = encodeVector(x, VectorDType.VECTOR_DTYPE_FLOAT16);
    const half = halfVectorOf(codecs.cachedVector.create({ vector: wire, dim: 64, dtype: VectorDType.VECTOR_DTYPE_FLOAT16, errorCode: 0, errorMessage: '' }))!;
    assert.ok(half instanceof Uint16Array);
    assert.deepEqual(new Uint8Array(half.buffer), wire);
    const fromFloat = halfVectorOf(
      codecs.cachedVector.create({
        vector: encodeVector(x, VectorDType.VECTOR_DTYPE_FLOAT32),
        dim: 64,
        dtype: VectorDType.VECTOR_DTYPE_FLOAT32,
        errorCode: 0,
        errorMessage: '',
      }),
    )!;
    assert.deepEqual([...fromFloat], [...half]);
    assert.equal(
      halfVectorOf(
        codecs.cachedVector.create({
          vector: new Uint8Array(0),
          dim: 0,
          dtype: VectorDType.VECTOR_DTYPE_FLOAT16,
          errorCode: ErrorCode.ERROR_CODE_DECODE_FAILED,
          errorMessage: 'x',
        }),
      ),
      undefined,
    );
    assert.throws(
      () =>
        halfVectorOf(
          codecs.cachedVector.create({ vector: new Uint8Array(10), dim: 64, dtype: VectorDType.VECTOR_DTYPE_FLOAT16, errorCode: 0, errorMessage: '' }),
        ),
      RangeError,
    );
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
