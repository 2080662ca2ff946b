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
  storeFullMessage,
  type JsMsg,
  type VectorBatch,
} from '@graft/protocol';
import { parseImageId } from '@graft/vision';
import type { CoordinatorContext } from './context.js';
import type { JobFlow } from './job-flow.js';
import type { JobRecords } from './job-records.js';
import type { ActiveJob } from './tracker.js';

type BatchVector = VectorBatch['vectors'][number];
const FINGERPRINT = /^[0-9a-f]{16}$/;

/**
 * Taking workers' vector batches in: each result checked against what a job waits for, vectors
 * and content errors written to the vector cache, answers counted on their jobs, the answered
 * task taken off the queue, and whatever was refused dead-lettered with why.
 */
export class ResultsIntake {
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
    await Promise.all(
      batch.vectors.map(async (v) => {
        const problem = await this.checkVector(fp, v);
        if (problem) return void refused.push(`${v.sha256.slice(0, 12)}: ${problem}`);
        if (problem === undefined) accepted.push(v);
      }),
    );
    await Promise.all(accepted.map((v) => this.cache(fp, v)));
    const touched = new Set<ActiveJob>();
    for (const v of accepted) for (const job of this.flow.recordAnswer(fp, v.sha256, v.errorCode ?? 0, v.errorMessage ?? '')) if (v.errorCode && !isContentError(v.errorCode)) touched.add(job);
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

  /** The batch, or undefined when it is malformed (then dead-lettered and terminated). */
  private async decode(msg: JsMsg): Promise<VectorBatch | undefined> {
    try {
      const batch = codecs.vectorBatch.decode(msg.data, `vector batch on ${msg.subject}`);
      if (!FINGERPRINT.test(batch.backboneFingerprint)) throw new Error(`vector batch on ${msg.subject} has no valid backbone fingerprint`);
      const bad = batch.vectors.find((v) => !parseImageId(v.sha256));
      if (bad) throw new Error(`vector batch on ${msg.subject} names an image by ${JSON.stringify(bad.sha256.slice(0, 80))}, not a SHA-256 (or an augmented copy of one)`);
      return batch;
    } catch (err) {
      this.ctx.metrics.malformed.inc({ stream: STREAMS.results });
      this.ctx.log.error({ err, subject: msg.subject }, 'malformed vector batch: dropped');
      await deadLetter(this.ctx.bus, 'result', msg.data, msg.subject, (err as Error).message);
      msg.term();
      return undefined;
    }
  }

  /**
   * Whether a worker's result for one image can be trusted: some job must be waiting for it,
   * and a vector must have that job's dimension and the bytes its dimension and dtype need.
   * @returns a problem (refuse it), '' (a late duplicate of a result already cached: ignore it), or undefined (accept it).
   */
  private async checkVector(fp: string, v: BatchVector): Promise<string | undefined> {
    const dim = this.ctx.jobs.expectedDim(fp, v.sha256);
    if (dim === undefined) {
      const cached = await readCachedVector(this.ctx.bus, fp, v.sha256).catch((err: unknown) => {
        this.ctx.log.debug({ err, image: v.sha256 }, 'cannot read the vector cache: the result is refused as unasked');
        return undefined;
      });
      return cached ? '' : 'no task asked for this image';
    }
    if (v.errorCode) return undefined;
    if (v.dim !== dim) return `a ${v.dim}-d vector where the backbone gives ${dim}-d`;
    try {
      decodeVector(v.vector, dim, v.dtype);
    } catch (err) {
      return (err as Error).message;
    }
    return undefined;
  }

  /** Caches an accepted result: a vector, or an error of the image's content (another attempt's failure is recorded on the job only). */
  private async cache(fp: string, v: BatchVector): Promise<void> {
    this.ctx.metrics.vectors.inc({ kind: v.errorCode ? 'error' : 'vector' });
    if (v.errorCode && !isContentError(v.errorCode)) return;
    try {
      await this.ctx.persist('caching a vector', () => cacheVector(this.ctx.bus, fp, v.sha256, { vector: v.vector, dim: v.dim, dtype: v.dtype, errorCode: v.errorCode, errorMessage: v.errorMessage }));
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
