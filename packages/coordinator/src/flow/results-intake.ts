import {
  BUCKETS,
  ErrorCode,
  STREAMS,
  cacheVector,
  codecs,
  deadLetter,
  decodeVector,
  isContentError,
  isStoreFull,
  readCachedVector,
  readImage,
  removeCorruptImage,
  storeFullMessage,
  type JsMsg,
  type VectorBatch,
} from '@graft/protocol';
import { decodeImage, ImageError, parseImageId } from '@graft/vision';
import type { CoordinatorContext } from '../context.js';
import type { JobFlow } from './job-flow.js';
import type { JobRecords } from './job-records.js';
import type { ActiveJob } from '../tracking/tracker.js';

type BatchVector = VectorBatch['vectors'][number];
const FINGERPRINT = /^[0-9a-f]{16}$/;
/** Largest magnitude a vector component may have: bottleneck activations are small; 3e38 is an attack. */
const MAX_COMPONENT = 1e6;
/** Images a batch may answer (a task is far smaller): a bigger batch is refused unread. */
const MAX_BATCH_IMAGES = 10_000;
/** Refused answers an image may get before it fails for its jobs (each refusal sends it to a worker again). */
const MAX_REFUSALS = 2;

/** What a worker may say of where it ran the backbone: `onnxruntime/cpu`, `wasm`... (anything else is not recorded). */
const RUNTIME = /^[a-z][a-z0-9-]{0,30}(\/[a-z0-9]{1,10})?$/;
/** Runtimes a job record lists. */
const MAX_RUNTIMES = 8;

/** Records on the job where a batch's backbone ran (each runtime once). */
function noteRuntime(job: ActiveJob, runtime: string): void {
  const listed = (job.status.runtimes ??= []);
  if (!RUNTIME.test(runtime) || listed.includes(runtime) || listed.length >= MAX_RUNTIMES) return;
  listed.push(runtime);
  job.dirty = true;
  job.log.info({ runtime }, `a worker runs this job's backbone on ${runtime}`);
}

/**
 * Taking workers' vector batches in: each result checked against what a job waits for, vectors
 * and content errors written to the vector cache, answers counted on their jobs, the answered
 * task taken off the queue, and whatever was refused dead-lettered with why.
 */
export class ResultsIntake {
  /** Images whose content error was disputed once (`<fp>.<id>`): sent to a worker again. */
  private readonly disputed = new Set<string>();
  /** Disputed twice: the job takes the failure, the cache does not (`<fp>.<id>`). */
  private readonly uncached = new Set<string>();
  /** Answers refused per image (`<fp>.<id>`): it is extracted again MAX_REFUSALS times, then fails. */
  private readonly refusals = new Map<string, number>();
  /** Photos removed as corrupt lately (each once). */
  private readonly repaired = new Set<string>();

  constructor(
    private readonly ctx: CoordinatorContext,
    private readonly records: JobRecords,
    private readonly flow: JobFlow,
  ) {}

  async onResults(msg: JsMsg): Promise<void> {
    const batch = await this.decode(msg);
    if (!batch) return;
    const fp = batch.backboneFingerprint;
    const refused: string[] = [];
    const accepted: BatchVector[] = [];
    const again: string[] = [];
    await Promise.all(
      batch.vectors.map(async (v) => {
        const problem = await this.checkVector(fp, v);
        if (problem) {
          refused.push(`${v.sha256.slice(0, 12)}: ${problem}`);
          this.afterRefusal(fp, v.sha256, problem, again);
          return;
        }
        if (problem === undefined) accepted.push(v);
      }),
    );
    // A disputed failure goes to a worker again (the task was acked): the job must not wait forever.
    if (again.length) await this.flow.extractAgain(fp, again);
    await Promise.all(accepted.map((v) => this.cache(fp, v)));
    const touched = new Set<ActiveJob>();
    const answered = new Set<ActiveJob>();
    for (const v of accepted) {
      for (const job of this.flow.recordAnswer(fp, v.sha256, v.errorCode ?? 0, v.errorMessage ?? '')) {
        answered.add(job);
        if (v.errorCode && !this.cachesFailure(fp, v)) touched.add(job);
      }
    }
    for (const job of answered) noteRuntime(job, batch.runtime);
    // A failure that is not cached lives only in its job's record: write it before the ack.
    for (const job of touched) await this.records.write(job);
    if (batch.taskSeq && accepted.length) await this.ctx.queue.remove(Number(batch.taskSeq), batch.taskId, this.ctx.log);
    if (refused.length) {
      const reason = `refused ${refused.length} of ${batch.vectors.length} results from worker ${JSON.stringify(batch.workerId)}: ${refused.slice(0, 5).join('; ')}`;
      this.ctx.metrics.vectors.inc({ kind: 'refused' }, refused.length);
      this.ctx.log.error({ task: batch.taskId, job: batch.jobId, worker: batch.workerId }, `vector batch dead-lettered: ${reason}`);
      await deadLetter(this.ctx.bus, 'result', msg.data, msg.subject, reason);
    }
    msg.ack();
    this.ctx.metrics.lastProgress.setToCurrentTime();
  }

  /**
   * A refused answer leaves its jobs waiting (the task was acked): the image goes to a worker again,
   * or, refused too often, fails for its jobs with the reason.
   */
  private afterRefusal(fp: string, id: string, problem: string, again: string[]): void {
    if (this.ctx.jobs.expectedDim(fp, id) === undefined) return; // nobody waits for it
    const key = `${fp}.${id}`;
    if (this.refusals.size > 100_000) this.refusals.clear(); // bounded: a flood of refusals cannot grow it forever
    const n = (this.refusals.get(key) ?? 0) + 1;
    this.refusals.set(key, n);
    if (n <= MAX_REFUSALS) again.push(id);
    else this.flow.recordAnswer(fp, id, ErrorCode.ERROR_CODE_INTERNAL, `${n} answers refused: ${problem}`);
  }

  /** The batch, or undefined when it is malformed or not its task's answer (then dead-lettered and terminated). */
  private async decode(msg: JsMsg): Promise<VectorBatch | undefined> {
    let batch: VectorBatch;
    try {
      batch = codecs.vectorBatch.decode(msg.data, `vector batch on ${msg.subject}`);
      if (!FINGERPRINT.test(batch.backboneFingerprint)) throw new Error(`vector batch on ${msg.subject} has no valid backbone fingerprint`);
      if (batch.vectors.length === 0 || batch.vectors.length > MAX_BATCH_IMAGES)
        throw new Error(`vector batch on ${msg.subject} answers ${batch.vectors.length} images`);
      const bad = batch.vectors.find((v) => !parseImageId(v.sha256));
      if (bad)
        throw new Error(
          `vector batch on ${msg.subject} names an image by ${JSON.stringify(bad.sha256.slice(0, 80))}, not a SHA-256 (or an augmented copy of one)`,
        );
    } catch (err) {
      this.ctx.metrics.malformed.inc({ stream: STREAMS.results });
      return this.refuse(msg, 'malformed vector batch: dropped', (err as Error).message);
    }
    const signed = {
      jobId: batch.jobId,
      taskId: batch.taskId,
      fingerprint: batch.backboneFingerprint,
      imageIds: batch.vectors.map((v) => v.sha256),
      token: batch.taskToken,
    };
    if (msg.subject.split('.').pop() !== batch.jobId || !this.ctx.queue.isAnswerOf(signed)) {
      this.ctx.metrics.vectors.inc({ kind: 'refused' }, batch.vectors.length);
      return this.refuse(
        msg,
        'vector batch refused',
        `vector batch from worker ${JSON.stringify(batch.workerId.slice(0, 80))} on ${msg.subject.slice(0, 120)} does not carry the token of task ${JSON.stringify(batch.taskId.slice(0, 80))} for these images: only a worker given that task can answer it`,
      );
    }
    return batch;
  }

  private async refuse(msg: JsMsg, what: string, reason: string): Promise<undefined> {
    this.ctx.log.error({ subject: msg.subject.slice(0, 200), reason }, `${what} (dead-lettered)`);
    await deadLetter(this.ctx.bus, 'result', msg.data, msg.subject, reason);
    msg.term();
    return undefined;
  }

  /**
   * Whether a worker's result for one image can be trusted: some job must be waiting for it,
   * and a vector must have that job's dimension and the bytes its dimension and dtype need.
   * @returns a problem (refuse it), '' (a late duplicate of a result already cached: ignore it), or undefined (accept it).
   */
  private async checkVector(fp: string, v: BatchVector): Promise<string | undefined> {
    const dim = this.ctx.jobs.expectedDim(fp, v.sha256);
    if (v.errorCode === ErrorCode.ERROR_CODE_CORRUPT) await this.repairIfCorrupt(v.sha256);
    if (dim === undefined) {
      const cached = await readCachedVector(this.ctx.bus, fp, v.sha256).catch((err: unknown) => {
        this.ctx.log.debug({ err, image: v.sha256 }, 'cannot read the vector cache: the result is refused as unasked');
        return undefined;
      });
      return cached ? '' : 'no task asked for this image';
    }
    if (v.errorCode) return isContentError(v.errorCode) ? this.checkContentError(fp, v) : undefined;
    if (v.dim !== dim) return `a ${v.dim}-d vector where the backbone gives ${dim}-d`;
    let values: Float32Array;
    try {
      values = decodeVector(v.vector, dim, v.dtype);
    } catch (err) {
      return (err as Error).message;
    }
    for (let i = 0; i < values.length; i++) {
      if (!Number.isFinite(values[i])) return `its vector has ${values[i]} at ${i}`;
      if (Math.abs(values[i]) > MAX_COMPONENT) return `its vector has ${values[i]} at ${i}, beyond any bottleneck (|x| <= ${MAX_COMPONENT})`;
    }
    return undefined;
  }

  /**
   * A worker says an image's bytes cannot be decoded (or are empty): the coordinator decodes it
   * too before believing it, since the answer is cached for every later job with these bytes.
   * The first dispute refuses the answer (the image goes to a worker again); a second one takes the
   * failure for the job but keeps it out of the cache (a worker with tighter limits says TOO_LARGE).
   * @returns a problem when the image decodes here (the worker is wrong, or lying), else undefined.
   */
  private async checkContentError(fp: string, v: BatchVector): Promise<string | undefined> {
    const key = `${fp}.${v.sha256}`;
    if (this.disputed.has(key)) {
      this.uncached.add(key);
      return undefined;
    }
    const photo = parseImageId(v.sha256)!.sha256;
    const r = await this.ctx.persist('reading an image to check a failure', () => readImage(this.ctx.bus, photo, 256 * 1024 * 1024));
    if (!r.ok) {
      // Not confirmed (the coordinator cannot read the bytes at all): the job takes the failure, the
      // cache does not, so no later job inherits a failure nobody saw.
      this.uncached.add(key);
      if (r.problem === 'corrupt') await this.repairIfCorrupt(v.sha256);
      return undefined;
    }
    try {
      await decodeImage(r.bytes, 8);
    } catch (err) {
      if (err instanceof ImageError) return undefined; // confirmed: these bytes do not decode
      throw err;
    }
    this.disputed.add(key);
    return `it says ${v.errorMessage?.slice(0, 100) || 'the image cannot be decoded'}, but the image decodes here: sent to a worker again`;
  }

  /**
   * A worker read an image corrupt: when the coordinator reads it corrupt too, it removes it from the
   * store (the one writer that may), so that its owner's next publish uploads it again.
   */
  private async repairIfCorrupt(id: string): Promise<void> {
    const photo = parseImageId(id)?.sha256;
    if (!photo || this.repaired.has(photo)) return;
    const r = await this.ctx.persist('reading an image said corrupt', () => readImage(this.ctx.bus, photo, 256 * 1024 * 1024));
    if (r.ok || r.problem !== 'corrupt') return;
    if (this.repaired.size > 10_000) this.repaired.clear();
    this.repaired.add(photo);
    await this.ctx.persist('removing a corrupt image', () => removeCorruptImage(this.ctx.bus, photo));
    this.ctx.log.warn({ image: photo, reason: r.message }, 'a corrupt image was removed from the image store: publishing it again uploads it anew');
  }

  /** Whether an accepted failure is the image's own (cached for every later job) rather than this attempt's. */
  private cachesFailure(fp: string, v: BatchVector): boolean {
    return isContentError(v.errorCode) && !this.uncached.has(`${fp}.${v.sha256}`);
  }

  /** Caches an accepted result: a vector, or an error of the image's content (another attempt's failure is recorded on the job only). */
  private async cache(fp: string, v: BatchVector): Promise<void> {
    this.ctx.metrics.vectors.inc({ kind: v.errorCode ? 'error' : 'vector' });
    if (v.errorCode && !this.cachesFailure(fp, v)) return;
    try {
      await this.ctx.persist('caching a vector', () =>
        cacheVector(this.ctx.bus, fp, v.sha256, { vector: v.vector, dim: v.dim, dtype: v.dtype, errorCode: v.errorCode, errorMessage: v.errorMessage }),
      );
    } catch (err) {
      if (!isStoreFull(err)) throw err;
      // A full cache is the same next time: this image fails with the reason, the job goes on.
      v.errorCode = ErrorCode.ERROR_CODE_INTERNAL;
      v.errorMessage = `its vector could not be cached: ${storeFullMessage('vectors', BUCKETS.vectors)}`;
      this.ctx.log.error({ err, image: v.sha256 }, v.errorMessage);
      return;
    }
    this.ctx.metrics.vectorsCached.inc();
  }
}
