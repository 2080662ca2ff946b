import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import {
  ErrorCode,
  JobRecordConflict,
  JobState,
  STREAMS,
  assignSplit,
  Split,
  VectorDType,
  cacheVector,
  codecs,
  createClaim,
  createJobRecord,
  createLease,
  decodeVector,
  deleteCheckpoint,
  deleteLease,
  deleteSweepHeads,
  encodeVector,
  ensureExtractorConsumer,
  getModel,
  hasCachedVectors,
  hasImage,
  hasModel,
  hasSweepHead,
  imagesOnTheWay,
  isImageStored,
  listJobIds,
  listJobs,
  listTaskQueues,
  markClaimAnswered,
  openBus,
  inPool,
  openTaskQueue,
  publishManifest,
  publishTask,
  imageSubjects,
  removeCorruptImage,
  bindJobId,
  isStoredJobSound,
  jobIdProblem,
  newIdNonce,
  pageHash,
  pagesDigest,
  putImage,
  putModel,
  queuedStatus,
  readCachedVector,
  readCachedVectors,
  scanCachedVectors,
  readCheckpoint,
  readClaim,
  readImage,
  readPrepared,
  putPrepared,
  readJobRecord,
  readJob,
  JobAlreadyPublished,
  readLease,
  readManifest,
  readManifestHeader,
  imagePages,
  publishOver,
  readModelFile,
  readSweepHead,
  releaseClaim,
  removeAnsweredTask,
  serverNow,
  takeOverClaim,
  taskQueueDepth,
  vectorOf,
  writeCheckpoint,
  writeJobRecord,
  writeLease,
  writeModelFiles,
  writeSweepHead,
  type BusHandles as Bus,
  type DatasetManifest,
} from '@graft/protocol/testing';
import { ManifestEntries, loadJobVectors } from '@graft/coordinator';
import { startTestNats, type TestNats } from '../helpers/nats.js';
import { ROOT } from '../helpers/fixtures.js';
import { freezingProxy } from '../helpers/proxy.js';

/* Each store module against a real nats-server: what it writes, it reads back; what it refuses, it refuses. */

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const FP = '0123456789abcdef';

describe('stores (one module per JetStream store, on a real nats-server)', () => {
  let nats: TestNats;
  let bus: Bus;
  before(async () => {
    nats = await startTestNats();
    bus = await openBus({ servers: nats.url }, { memory: true });
  });
  after(async () => {
    await bus?.close();
    await nats?.cleanup();
  });

  it('images: put, checked read, stored-by-digest, missing and replaced bytes', async () => {
    const bytes = new Uint8Array(1_500_000).map((_, i) => (i * 7) % 251); // two chunks or more
    const small = new TextEncoder().encode('a small image');
    await putImage(bus, { name: sha(bytes), description: 'big' }, bytes);
    await putImage(bus, { name: sha(small), description: 'small' }, small);
    for (const b of [bytes, small]) {
      const r = await readImage(bus, sha(b));
      assert.ok(r.ok && Buffer.from(r.bytes).equals(Buffer.from(b)));
      assert.equal(await isImageStored(bus, sha(b), b.byteLength), true);
      assert.equal(await hasImage(bus, sha(b)), true);
    }
    assert.equal(await isImageStored(bus, sha(small), small.byteLength + 1), false, 'another size is not these bytes');
    const gone = 'f'.repeat(64);
    assert.equal(await hasImage(bus, gone), false);
    assert.deepEqual(await readImage(bus, gone), { ok: false, problem: 'missing', size: 0, message: 'image is not in the image store' });
    // An upload must be its name's bytes, and a stored photo is never replaced: its subjects keep their first message.
    const other = new TextEncoder().encode('other bytes');
    await assert.rejects(putImage(bus, { name: sha(small), description: 'forged' }, other), /cannot upload forged: its bytes are not/);
    await assert.rejects(bus.js.publish(imageSubjects.chunk(sha(small), 0), other), /maximum messages per subject/);
    await assert.rejects(bus.js.publish(imageSubjects.record(sha(small)), new Uint8Array([1])), /maximum messages per subject/);
    assert.ok((await readImage(bus, sha(small))).ok, 'the photo is still its bytes');
    // Other bytes under a name before its photo is uploaded are not that photo: corrupt, and removable.
    const early = createHash('sha256').update('never uploaded yet').digest('hex');
    await bus.js.publish(imageSubjects.chunk(early, 0), other);
    await bus.js.publish(imageSubjects.record(early), codecs.storedImage.encode({ size: other.byteLength, chunks: 1, sha256: Buffer.from(early, 'hex') }));
    const r = await readImage(bus, early);
    assert.equal(r.ok, false);
    assert.match(!r.ok ? r.message : '', /does not match its name/);
    assert.equal(await isImageStored(bus, early, 1), false);
    const bad = createHash('sha256').update('a record that is not one').digest('hex');
    await bus.js.publish(imageSubjects.record(bad), new Uint8Array([0xff, 0xff, 0xff]));
    assert.deepEqual(await readImage(bus, bad), {
      ok: false,
      problem: 'corrupt',
      size: 0,
      message: 'image is corrupt: its record in the image store is malformed',
    });
    await removeCorruptImage(bus, bad);
    assert.equal(await hasImage(bus, bad), false, 'removed: its owner can upload it');
    assert.equal((await readImage(bus, sha(bytes), 1000)).ok, false, 'over the byte cap: refused before the download');
  });

  it('images: multi-chunk reads at once while the event loop is busy all finish, and leave no consumer on the server', async () => {
    const photos = Array.from({ length: 6 }, (_, k) => new Uint8Array(3_200_000).map((_, i) => (i * (k + 3)) % 253)); // phone-sized: 25 chunks each
    for (const [k, b] of photos.entries()) await putImage(bus, { name: sha(b), description: `phone ${k}` }, b);
    // A backbone holding the thread (as inference does) between the reads' round trips.
    let busy = true;
    const hog = (async () => {
      while (busy) {
        const until = Date.now() + 150;
        while (Date.now() < until); // holds the event loop, as a backbone call does
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    const reads = await Promise.all(photos.map((b) => readImage(bus, sha(b))));
    busy = false;
    await hog;
    for (const [k, r] of reads.entries()) assert.ok(r.ok && Buffer.from(r.bytes).equals(Buffer.from(photos[k])), `photo ${k}`);
    const consumers = [];
    for await (const ci of bus.jsm.consumers.list(STREAMS.images)) consumers.push(ci.name);
    assert.deepEqual(consumers, [], 'no consumer created, none left behind');
  });

  it('images: objects uploaded at the same time (their chunks interleaved in the stream) read back whole', async () => {
    const photos = Array.from({ length: 4 }, (_, k) => new Uint8Array(3_000_000 + k * 50_000).map((_, i) => (i * (k + 5)) % 241));
    const before = (await bus.jsm.streams.info(STREAMS.images)).state.last_seq;
    await Promise.all(photos.map((b, k) => putImage(bus, { name: sha(b), description: `together ${k}` }, b)));
    const after = (await bus.jsm.streams.info(STREAMS.images)).state.last_seq;
    // The stream holds their chunks mixed: a read cannot assume one object's chunks follow one another.
    let switches = 0;
    let last = '';
    for (let seq = before + 1; seq <= after; seq++) {
      const photo = (await bus.jsm.direct.getMessage(STREAMS.images, { seq }))!.subject.split('.')[2];
      if (photo !== last) switches++;
      last = photo;
    }
    assert.ok(switches > photos.length, `the uploads interleaved (${switches} switches between objects)`);
    for (const [k, b] of photos.entries()) {
      const r = await readImage(bus, sha(b));
      assert.ok(r.ok && Buffer.from(r.bytes).equals(Buffer.from(b)), `photo ${k}`);
    }
  });

  it('prepared inputs: stored and read back checked; another size or rule is another copy; a damaged one is said so', async () => {
    const sha64 = 'c'.repeat(64);
    const px = new Uint8Array(8 * 8 * 3).map((_, i) => i % 251);
    assert.deepEqual(await readPrepared(bus, 'rule-a', 8, sha64), { ok: false, problem: 'missing', message: 'not prepared' });
    await putPrepared(bus, 'rule-a', 8, sha64, px);
    const r = await readPrepared(bus, 'rule-a', 8, sha64);
    assert.ok(r.ok && Buffer.from(r.pixels).equals(Buffer.from(px)));
    assert.equal((await readPrepared(bus, 'rule-b', 8, sha64)).ok, false, 'another rule');
    assert.equal((await readPrepared(bus, 'rule-a', 9, sha64)).ok, false, 'another size');
    await assert.rejects(putPrepared(bus, 'rule-a', 9, sha64, px), /not 9x9x3/);
    await assert.rejects(putPrepared(bus, 'rule.a', 8, sha64, px), /invalid resize rule/);
    await bus.js.publish(`graft.prepared.rule-a.8.${sha64}`, new Uint8Array([9, 9, 9]));
    assert.equal((await readPrepared(bus, 'rule-a', 8, sha64)).ok, false);
    assert.equal(((await readPrepared(bus, 'rule-a', 8, sha64)) as { problem: string }).problem, 'damaged');
  });

  it('prepared inputs at their cap: the oldest copies go, writes never fail', async () => {
    const capped = await openBus({ servers: nats.url }, { maxBytes: { prepared: 200_000 } });
    try {
      const px = new Uint8Array(100 * 100 * 3).fill(5);
      const shas = Array.from({ length: 10 }, (_, i) => createHash('sha256').update(`cap ${i}`).digest('hex'));
      for (const s of shas) await putPrepared(capped, 'rule-cap', 100, s, px);
      assert.equal((await readPrepared(capped, 'rule-cap', 100, shas[0])).ok, false, 'the oldest is gone');
      assert.equal((await readPrepared(capped, 'rule-cap', 100, shas[9])).ok, true, 'the newest is there');
      assert.ok((await capped.jsm.streams.info(STREAMS.prepared)).state.bytes <= 200_000);
    } finally {
      await capped.close();
    }
  });

  it('vectors: cache, read, read many, has (by subject count), vector of an error is none', async () => {
    const v = new Float32Array([1, 2, 3, 4]);
    await cacheVector(bus, FP, 'a'.repeat(64), { vector: encodeVector(v, VectorDType.VECTOR_DTYPE_FLOAT32), dim: 4, dtype: VectorDType.VECTOR_DTYPE_FLOAT32 });
    await cacheVector(bus, FP, 'b'.repeat(64), { errorCode: ErrorCode.ERROR_CODE_DECODE_FAILED, errorMessage: 'not an image' });
    assert.deepEqual([...vectorOf(await readCachedVector(bus, FP, 'a'.repeat(64)))!], [1, 2, 3, 4]);
    assert.equal(vectorOf(await readCachedVector(bus, FP, 'b'.repeat(64))), undefined);
    assert.equal((await readCachedVector(bus, FP, 'b'.repeat(64)))!.errorCode, ErrorCode.ERROR_CODE_DECODE_FAILED);
    assert.equal(await readCachedVector(bus, FP, 'c'.repeat(64)), undefined);
    const seen = new Map<string, boolean>();
    await readCachedVectors(bus, FP, ['a'.repeat(64), 'b'.repeat(64), 'c'.repeat(64)], (id, e) => seen.set(id[0], e !== undefined));
    assert.deepEqual(Object.fromEntries(seen), { a: true, b: true, c: false });
    assert.equal(await hasCachedVectors(bus, FP, ['a'.repeat(64), 'b'.repeat(64)]), true);
    assert.equal(await hasCachedVectors(bus, FP, ['a'.repeat(64), 'c'.repeat(64)]), false);
    assert.equal(await hasCachedVectors(bus, 'fedcba9876543210', ['a'.repeat(64)]), false, 'keyed by backbone too');
  });

  it("vectors: a scan of many images lists the backbone's keys and reads only the errors, never the vectors", async () => {
    const fp = 'aaaabbbbccccdddd';
    const id = (i: number) => createHash('sha256').update(`scan ${i}`).digest('hex');
    const v = new Float32Array(1280).fill(0.5);
    for (let i = 0; i < 600; i++)
      await cacheVector(bus, fp, id(i), { vector: encodeVector(v, VectorDType.VECTOR_DTYPE_FLOAT32), dim: 1280, dtype: VectorDType.VECTOR_DTYPE_FLOAT32 });
    for (let i = 600; i < 610; i++)
      await cacheVector(bus, fp, id(i), { errorCode: ErrorCode.ERROR_CODE_DECODE_FAILED, errorMessage: `not an image ${i} ${'x'.repeat(2000)}` });
    const ids = Array.from({ length: 1200 }, (_, i) => id(i));
    const seen = new Map<string, { errorCode?: number; errorMessage?: string } | undefined>();
    const before = bus.nc.stats().inBytes;
    await scanCachedVectors(bus, fp, ids, 1280, (i, a) => seen.set(i, a));
    const read = bus.nc.stats().inBytes - before;
    assert.equal(seen.size, 1200);
    assert.equal(ids.slice(0, 600).filter((i) => seen.get(i)?.errorCode === 0).length, 600, 'vectors');
    for (let i = 600; i < 610; i++) {
      assert.equal(seen.get(id(i))?.errorCode, ErrorCode.ERROR_CODE_DECODE_FAILED);
      assert.equal(seen.get(id(i))?.errorMessage?.length, 300, 'a cached error message is cut to 300 characters');
    }
    assert.equal(ids.slice(610).filter((i) => seen.get(i) === undefined).length, 590, 'not cached');
    assert.ok(read < (600 * 5120) / 4, `read ${read} bytes for 600 cached vectors of 5,120 bytes: their keys, not their values`);
    // A backbone with a small dimension (an error may be as large as its vector): every entry is read.
    const small = new Map<string, unknown>();
    await scanCachedVectors(bus, FP, ['a'.repeat(64), 'b'.repeat(64), 'c'.repeat(64)], 4, (i, a) =>
      small.set(i[0], a === undefined ? 'none' : a.errorCode ? 'error' : 'vector'),
    );
    assert.deepEqual(Object.fromEntries(small), { a: 'vector', b: 'error', c: 'none' });
  });

  it('vectors: a listing of the cache that stops receiving mid-way times out (to be tried again), never waits for ever', async () => {
    const fp = 'stallstallstall1';
    const ids = Array.from({ length: 4000 }, (_, i) => createHash('sha256').update(`stall ${i}`).digest('hex'));
    const vector = encodeVector(new Float32Array(640).fill(0.5), VectorDType.VECTOR_DTYPE_FLOAT16);
    await inPool(ids, 32, (id) => cacheVector(bus, fp, id, { vector, dim: 640, dtype: VectorDType.VECTOR_DTYPE_FLOAT16 }));
    const proxy = await freezingProxy(nats.port);
    const through = await openBus({ servers: `nats://127.0.0.1:${proxy.port}` }, { create: false });
    try {
      // About 300 bytes an entry, headers only: 4,000 entries are over a megabyte; the broker goes quiet after 300 KB.
      proxy.arm(300_000);
      await assert.rejects(
        scanCachedVectors(through, fp, ids, 640, () => undefined, 1000),
        (e: Error) =>
          e.name === 'TimeoutError' && /listing the vector cache of stallstallstall1 timed out: no entry for 1 s \(\d+ of 4000 listed\)/.test(e.message),
      );
      assert.ok(proxy.frozen, 'the proxy froze mid-listing (else this test shows nothing)');
      proxy.thaw();
      let seen = 0;
      await scanCachedVectors(through, fp, ids, 640, (_id, a) => void (seen += a?.errorCode === 0 ? 1 : 0), 1000);
      assert.equal(seen, 4000, 'tried again once the broker answers, the listing is whole');
    } finally {
      proxy.thaw();
      await through.close().catch(() => undefined);
      await proxy.close();
    }
  });

  it('vectors: a job that asked for float16 trains on the cached half floats as they are (half the bytes), a float32 job on floats', async () => {
    const fp = 'f16f16f16f16f16f';
    const ids = Array.from({ length: 6 }, (_, i) => createHash('sha256').update(`f16 ${i}`).digest('hex'));
    const x = (i: number) => Float32Array.from({ length: 32 }, (_, j) => Math.sin(i * 32 + j) * 3);
    for (const [i, id] of ids.entries())
      await cacheVector(bus, fp, id, { vector: encodeVector(x(i), VectorDType.VECTOR_DTYPE_FLOAT16), dim: 32, dtype: VectorDType.VECTOR_DTYPE_FLOAT16 });
    const images = ids.map((sha256, i) => ({
      sha256,
      label: i % 2 ? 'y' : 'x',
      path: `${i % 2 ? 'y' : 'x'}/${i}.jpg`,
      split: [Split.SPLIT_TRAIN, Split.SPLIT_VALIDATION, Split.SPLIT_TEST][i % 3],
    }));
    const persist = <T>(_what: string, op: () => Promise<T>) => op();
    const manifest = (vectorDtype: VectorDType) => codecs.manifest.create({ jobId: 'f16', name: 'f16', classes: ['x', 'y'], images, vectorDtype });
    const half = await loadJobVectors(
      bus,
      manifest(VectorDType.VECTOR_DTYPE_FLOAT16),
      ManifestEntries.of(manifest(VectorDType.VECTOR_DTYPE_FLOAT16)),
      fp,
      persist,
    );
    const full = await loadJobVectors(
      bus,
      manifest(VectorDType.VECTOR_DTYPE_FLOAT32),
      ManifestEntries.of(manifest(VectorDType.VECTOR_DTYPE_FLOAT32)),
      fp,
      persist,
    );
    for (const split of ['train', 'validation', 'test'] as const) {
      assert.equal(half[split].x.length, 2, split);
      for (const [k, row] of half[split].x.entries()) {
        const i = ids.indexOf(half[split].images[k].sha256);
        assert.ok(row instanceof Uint16Array, `${split} row held as half floats`);
        assert.deepEqual(new Uint8Array(row.buffer), encodeVector(x(i), VectorDType.VECTOR_DTYPE_FLOAT16), 'bit for bit what the cache holds');
        assert.ok(full[split].x[k] instanceof Float32Array);
        assert.deepEqual([...full[split].x[k]], [...decodeVector(encodeVector(x(i), VectorDType.VECTOR_DTYPE_FLOAT16), 32, VectorDType.VECTOR_DTYPE_FLOAT16)]);
      }
    }
  });

  it('models: stored under a fingerprint, complete only with model.json', async () => {
    assert.equal(await hasModel(bus, FP), false);
    assert.equal(await getModel(bus, FP), undefined);
    await putModel(bus, FP, { modelJson: new TextEncoder().encode('{"m":1}'), weights: new Uint8Array([1, 2, 3]) });
    assert.equal(await hasModel(bus, FP), true);
    const m = await getModel(bus, FP);
    assert.deepEqual([...m!.weights], [1, 2, 3]);
    assert.equal(new TextDecoder().decode(m!.modelJson), '{"m":1}');
  });

  it('artifacts: checkpoint, sweep heads and model files of a job', async () => {
    assert.equal(await readCheckpoint(bus, 'j1'), undefined);
    await writeCheckpoint(bus, 'j1', { epoch: 3, bestEpoch: 2, history: [{ epoch: 1, epochs: 3, loss: 0.5, accuracy: 0.7, valLoss: 0.6, valAccuracy: 0.65 }] });
    const c = await readCheckpoint(bus, 'j1');
    assert.equal(c!.epoch, 3);
    assert.equal(c!.jobId, 'j1', 'the job id is written with it');
    await deleteCheckpoint(bus, 'j1');
    assert.equal(await readCheckpoint(bus, 'j1'), undefined);
    await writeSweepHead(bus, 'j1', { configId: 'h1', valAccuracy: 0.75, optionsJson: '{}' });
    assert.equal(await hasSweepHead(bus, 'j1', 'h1'), true);
    assert.equal((await readSweepHead(bus, 'j1', 'h1'))!.valAccuracy, 0.75); // a float: exact in binary
    assert.deepEqual(await deleteSweepHeads(bus, 'j1', ['h1']), []);
    assert.equal(await hasSweepHead(bus, 'j1', 'h1'), false);
    await writeModelFiles(bus, 'j1', { 'graft.json': new TextEncoder().encode('{}') });
    assert.equal(new TextDecoder().decode(await readModelFile(bus, 'j1', 'graft.json')), '{}');
    assert.equal(await readModelFile(bus, 'j1', 'model.json'), undefined);
  });

  it('claims: one holder, take-over only over the revision read, answered and released', async () => {
    assert.equal(await createClaim(bus, 't1', 'w1', 'proof-1'), true);
    assert.equal(await createClaim(bus, 't1', 'w2', 'proof-2'), false, 'a held claim is not claimed twice');
    const held = await readClaim(bus, 't1');
    assert.equal(held!.holder, 'w1');
    assert.equal(held!.proof, 'proof-1');
    assert.equal(held!.answered, false);
    const now = await serverNow(bus, 'w2');
    assert.ok(now && now.getTime() >= held!.writtenAt.getTime(), 'the server clock is read from a probe write');
    assert.equal(await takeOverClaim(bus, 't1', 'w2', 'proof-2', held!.revision + 5), false, 'a stale revision takes nothing over');
    assert.equal(await takeOverClaim(bus, 't1', 'w2', 'proof-2', held!.revision), true);
    await markClaimAnswered(bus, 't1', 'w 2', 'proof-3');
    assert.deepEqual(
      { ...(await readClaim(bus, 't1'))!, revision: 0, writtenAt: null },
      { holder: 'w 2', proof: 'proof-3', answered: true, revision: 0, writtenAt: null },
    );
    await releaseClaim(bus, 't1');
    assert.equal(await readClaim(bus, 't1'), undefined);
  });

  it('leases: created once, written only over the revision read, deleted', async () => {
    assert.equal(await readLease(bus), undefined);
    const r1 = await createLease(bus, 'c1', 5000);
    await assert.rejects(createLease(bus, 'c2', 5000), 'a held lease cannot be created again');
    const r2 = await writeLease(bus, 'c1', 5000, r1);
    await assert.rejects(writeLease(bus, 'c2', 5000, r1), 'a renewal over an old revision is refused');
    assert.equal((await readLease(bus))!.lease.holder, 'c1');
    await deleteLease(bus, r2);
    assert.equal(await readLease(bus), undefined);
  });

  it('jobs: records with revisions, listing, manifests (first one wins), ids made from the content', async () => {
    const manifest = codecs.manifest.create({ name: 'a', classes: ['x', 'y'], images: [{ path: 'x/1.jpg', label: 'x', sha256: 'a'.repeat(64) }] });
    const a = await publishManifest(bus, manifest, 'job-a-');
    assert.match(a, /^job-a-[0-9a-f]{16}$/);
    assert.equal(await readJobRecord(bus, a), undefined, 'the publisher writes no record: the coordinator does');
    assert.equal((await readJob(bus, a))!.state, JobState.JOB_STATE_QUEUED, 'shown queued from its manifest');
    const header = (await readManifest(bus, a))!;
    assert.equal(header.images.length, 1);
    await assert.rejects(
      publishManifest(bus, manifest, 'job-a-'),
      JobAlreadyPublished,
      'the same content under the same prefix is the same job: published once',
    );
    assert.notEqual(await publishManifest(bus, { ...manifest, idNonce: newIdNonce() }, 'job-a-'), a, 'another nonce, another job');
    assert.equal(jobIdProblem(header), undefined, "the id is its content's");
    assert.match(jobIdProblem(codecs.manifest.create({ ...header, name: 'other options' }))!, /is not the digest of this manifest's content/);
    assert.match(jobIdProblem(codecs.manifest.create({ ...header, jobId: 'victimX' }))!, /does not end in the digest of its content/);
    await createJobRecord(bus, queuedStatus(header));
    const rec = await readJobRecord(bus, a);
    const s = rec!.status;
    s.state = JobState.JOB_STATE_EXTRACTING;
    const r2 = await writeJobRecord(bus, s, rec!.revision);
    await assert.rejects(writeJobRecord(bus, s, rec!.revision), JobRecordConflict, 'a write over a revision already replaced is refused');
    assert.ok(r2 > rec!.revision);
    await createJobRecord(bus, queuedStatus({ ...header, jobId: 'job-b' }));
    await bus.jobs.put('job-bad', new Uint8Array([0xff, 0xff, 0xff]));
    assert.deepEqual((await listJobIds(bus)).sort(), [a, 'job-b', 'job-bad']);
    const unreadable: string[] = [];
    const jobs = await listJobs(bus, (id) => unreadable.push(id));
    assert.deepEqual(jobs.map((j) => j.jobId).sort(), [a, 'job-b']);
    assert.deepEqual(unreadable, ['job-bad'], 'an unreadable record is named, not hidden');
  });

  it('jobs: a manifest of 200,000 photos publishes in pages, reads back whole, is shown queued from its header alone; a missing page is an error', async () => {
    const images = Array.from({ length: 200_000 }, (_, i) => ({
      path: `photos/class${i % 10}/photo_${i}.jpg`,
      label: `class${i % 10}`,
      sha256: createHash('sha256').update(String(i)).digest('hex'),
      sizeBytes: 1000 + i,
    }));
    const manifest = codecs.manifest.create({ name: 'huge', classes: Array.from({ length: 10 }, (_, i) => `class${i}`), images });
    const huge = await publishManifest(bus, manifest, 'huge-');
    const pages = (await bus.jsm.streams.info(STREAMS.manifestPages, { subjects_filter: `graft.manifest-pages.${huge}.*` })).state.num_subjects ?? 0;
    assert.ok(pages >= 20, `${pages} pages`);
    const back = (await readManifest(bus, huge))!;
    assert.equal(back.images.length, 200_000);
    const e = back.images[123_456];
    assert.deepEqual({ path: e.path, label: e.label, sha256: e.sha256, sizeBytes: Number(e.sizeBytes) }, images[123_456]);
    await assert.rejects(publishManifest(bus, manifest, 'huge-'), JobAlreadyPublished, 'a large job is published once too');
    // Not yet taken by a coordinator: its status comes from the header, not from 20 MB of pages.
    const before = bus.nc.stats().inBytes;
    const queued = (await readJob(bus, huge))!;
    const read = bus.nc.stats().inBytes - before;
    assert.equal(queued.state, JobState.JOB_STATE_QUEUED);
    assert.equal(queued.counts!.total, 200_000);
    assert.ok(read < 64 * 1024, `read ${read} bytes to show a queued job`);
    // A page gone (or never published): the manifest is refused as unreadable, not read short.
    const half = await publishManifest(bus, codecs.manifest.create({ ...manifest, images: images.slice(0, 20_000) }), 'half-', 64 * 1024);
    const seq = (await bus.jsm.streams.getMessage(STREAMS.manifestPages, { last_by_subj: `graft.manifest-pages.${half}.1` }))!.seq;
    await bus.jsm.streams.deleteMessage(STREAMS.manifestPages, seq);
    await assert.rejects(readManifest(bus, half), /manifest of half-[0-9a-f]+ is missing page 2 of/);
  });

  it("jobs: a job over a published job's photos (a sweep, an audit) copies its pages one at a time; cut off before its header, it publishes when tried again; pages squatted under its id are found", async () => {
    const images = Array.from({ length: 5000 }, (_, i) => ({
      path: `c${i % 3}/p${i}.jpg`,
      label: `c${i % 3}`,
      sha256: createHash('sha256').update(`over ${i}`).digest('hex'),
    }));
    const src = await publishManifest(
      bus,
      codecs.manifest.create({ name: 'src', classes: ['c0', 'c1', 'c2'], images, training: { epochs: 3 } }),
      'over-src-',
      16 * 1024,
    );
    const from = (await readManifestHeader(bus, src))!;
    assert.equal(from.images.length, 0, 'the header alone');
    const pages: DatasetManifest['images'][] = [];
    for await (const p of imagePages(bus, from)) pages.push(p);
    assert.equal(pages.length, from.imagePages);
    assert.ok(pages.length >= 10 && Math.max(...pages.map((p) => p.length)) < 1000, `${pages.length} pages`);
    // The audit's id is made from its content: known before it is published.
    const audit = codecs.manifest.create({ ...from, images: [], jobId: '', idNonce: '', training: { ...from.training, audit: true } });
    const pageBytes = pages.map((images, page) => codecs.manifestPage.encode({ page, images }));
    const paged = { ...audit, imagePages: pages.length, imageCount: from.imageCount, pagesSha256: pagesDigest(pageBytes.map(pageHash)) };
    const id = bindJobId('over-audit-', paged).jobId;
    // Cut off after two pages of the audit: the same pages are there already when it is tried again.
    for (const page of [0, 1]) await bus.js.publish(`graft.manifest-pages.${id}.${page}`, pageBytes[page]);
    assert.equal(await publishOver(bus, from, audit, 'over-audit-'), id);
    const back = (await readManifest(bus, id))!;
    assert.deepEqual(
      back.images.map((i) => i.sha256),
      images.map((i) => i.sha256),
    );
    assert.equal(back.training?.audit, true);
    assert.equal(back.training?.epochs, 3);
    assert.ok(await isStoredJobSound(bus, id));
    await assert.rejects(publishOver(bus, from, audit, 'over-audit-'), JobAlreadyPublished, 'published once');
    // A page of other bytes squatted under the job's id is not taken for its own; with the real
    // header raced in after it, the stored job is not sound and reads as not its header's.
    const other = bindJobId('over-other-', paged).jobId;
    await bus.js.publish(`graft.manifest-pages.${other}.0`, codecs.manifestPage.encode({ page: 0, images: pages[1] }));
    await assert.rejects(publishOver(bus, from, audit, 'over-other-'), JobAlreadyPublished);
    for (let page = 1; page < pages.length; page++) await bus.js.publish(`graft.manifest-pages.${other}.${page}`, pageBytes[page]);
    await bus.js.publish(`graft.manifests.${other}`, codecs.manifest.encode(bindJobId('over-other-', paged)));
    assert.equal(await isStoredJobSound(bus, other), false);
    await assert.rejects(readManifest(bus, other), /the pages of the manifest of over-other-[0-9a-f]+ are not the ones its header names/);
  });

  it('jobs: a sweep of a 200,000-photo job is published in a process whose heap could not hold its image list', async () => {
    const images = Array.from({ length: 200_000 }, (_, i) => ({
      path: `photos/class${i % 10}/photo_${i}.jpg`,
      label: `class${i % 10}`,
      sha256: createHash('sha256').update(`big ${i}`).digest('hex'),
      sizeBytes: 1000 + i,
    }));
    const big = await publishManifest(bus, codecs.manifest.create({ name: 'big', classes: Array.from({ length: 10 }, (_, i) => `class${i}`), images }), 'big-');
    const child = (body: string) =>
      spawnSync(
        process.execPath,
        [
          '--max-old-space-size=40',
          '--input-type=module',
          '-e',
          `import * as p from '@graft/protocol/testing'; const bus = await p.openBus({ servers: ${JSON.stringify(nats.url)} }, { create: false }); ${body}; await bus.close();`,
        ],
        { cwd: ROOT, encoding: 'utf8', timeout: 120_000 },
      );
    const whole = child(`const m = await p.readManifest(bus, '${big}'); console.log(m.images.length)`);
    assert.notEqual(whole.status, 0, 'the whole list does not fit in 40 MB of heap (else this test shows nothing)');
    const over = child(
      `const from = await p.readManifestHeader(bus, '${big}'); console.log(await p.publishOver(bus, from, p.codecs.manifest.create({ ...from, images: [], jobId: '', training: { sweep: true } }), 'big-sweep-'))`,
    );
    assert.equal(over.status, 0, over.stderr.slice(-2000));
    const header = (await readManifestHeader(bus, over.stdout.trim()))!;
    assert.equal(Number(header.imageCount), 200_000);
    assert.equal(header.training?.sweep, true);
  });

  it("jobs: the coordinator reads a 200,000-photo job's entries a page at a time into columns, in a heap the decoded list does not fit", async () => {
    const images = Array.from({ length: 200_000 }, (_, i) => ({
      path: `photos/class${i % 10}/фото_${i}.jpg`,
      label: `class${i % 10}`,
      sha256: createHash('sha256').update(`columns ${i}`).digest('hex'),
      sizeBytes: 1000 + i,
      source: i % 2 ? `list.txt:${i + 1}` : '',
    }));
    const columns = await publishManifest(
      bus,
      codecs.manifest.create({ name: 'columns', classes: Array.from({ length: 10 }, (_, i) => `class${i}`), images }),
      'columns-',
    );
    const child = (body: string) =>
      spawnSync(
        process.execPath,
        [
          '--max-old-space-size=64',
          '--input-type=module',
          '-e',
          `import * as p from '@graft/protocol/testing'; import * as c from '@graft/coordinator'; const bus = await p.openBus({ servers: ${JSON.stringify(nats.url)} }, { create: false }); ${body}; await bus.close();`,
        ],
        { cwd: ROOT, encoding: 'utf8', timeout: 120_000 },
      );
    const whole = child(`const m = await p.readManifest(bus, '${columns}'); console.log(m.images.length)`);
    assert.notEqual(whole.status, 0, 'the decoded list does not fit in 64 MB of heap (else this test shows nothing)');
    const read = child(
      `const h = await p.readManifestHeader(bus, '${columns}'); const l = await c.ManifestEntries.read(h, p.imagePages(bus, h)); const j = new c.JobImages(l, h.training); const e = 199_999; console.log(JSON.stringify({ n: l.length, ids: j.count, problems: l.problems, sha: l.sha(e), path: l.path(e), source: l.source(e), label: l.label(e), split: l.split(e), first: l.source(0) }))`,
    );
    assert.equal(read.status, 0, read.stderr.slice(-2000));
    const got = JSON.parse(read.stdout);
    const last = images[199_999];
    assert.deepEqual(got, {
      n: 200_000,
      ids: 200_000,
      problems: [],
      sha: last.sha256,
      path: last.path,
      source: last.source,
      label: 9,
      split: assignSplit(last.path),
      first: '',
    });
  });

  it('tasks: consumer, publish (deduplicated by id), queues and depth, on the way, pull, removal', async () => {
    await ensureExtractorConsumer(bus, FP, { ackWaitMs: 5000, maxDeliver: 3 });
    const task = { jobId: 'job-a', taskId: 'task-1', backbone: { fingerprint: FP, inputSize: 8 }, imageSha256: ['d'.repeat(64), 'e'.repeat(64)] };
    await publishTask(bus, task);
    await publishTask(bus, task); // the same id inside the dedupe window: stored once
    const queues = [];
    for await (const q of listTaskQueues(bus)) queues.push(q);
    assert.deepEqual(
      queues.map((q) => [q.fingerprint, q.ackWaitMs, q.maxDeliver, q.pending]),
      [[FP, 5000, 3, 1]],
    );
    assert.deepEqual(await taskQueueDepth(bus), { pending: 1, unacked: 0 });
    assert.deepEqual([...(await imagesOnTheWay(bus, FP))].sort(), ['d'.repeat(64), 'e'.repeat(64)]);
    const msg = await (await openTaskQueue(bus, queues[0].consumer)).next(2000);
    assert.equal(codecs.task.decode(msg!.data).taskId, 'task-1');
    assert.deepEqual(await taskQueueDepth(bus), { pending: 0, unacked: 1 });
    assert.equal(await removeAnsweredTask(bus, msg!.info.streamSequence, 'another-task'), false, 'only the task named is removed');
    assert.equal(await removeAnsweredTask(bus, msg!.info.streamSequence, 'task-1'), true);
    assert.equal((await imagesOnTheWay(bus, FP)).size, 0);
  });
});
