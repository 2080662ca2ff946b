import type { Logger } from 'pino';
import { errorCodeName, readCachedVectors, splitOf, splitPercents, vectorKey, type Bus, type DatasetManifest, type ErrorCode, type JobStatus } from '@graft/protocol';
import { augmentedId, isAugmentedId, type ResolvedBackbone } from '@graft/vision';

/** Failures listed on a job record; the rest are counted. About 200 bytes each, far below max_payload. */
const MAX_LISTED_FAILURES = 200;

/** A job the coordinator is extracting or training, with what it still waits for. */
export interface ActiveJob {
  manifest: DatasetManifest;
  status: JobStatus;
  backbone: ResolvedBackbone;
  /** Image id (a sha256, or an augmented copy's `<sha256>_<spec>_<variant>`) -> number of manifest entries still waiting for it. */
  pending: Map<string, number>;
  /** Image id -> the manifest paths it stands for (a copy: its photo's training paths). */
  pathsBySha: Map<string, string[]>;
  /** Where a list named each path (`labels.csv:12`), for images from a list. */
  sourceOfPath: Map<string, string>;
  log: Logger;
  /** Counts moved since the record was last written. */
  dirty: boolean;
  /** Revision of the job record as this coordinator last wrote it (0: not written yet). */
  revision: number;
  /** The last record write in flight: writes are chained, never concurrent. */
  writes: Promise<void>;
  /** Times the pre-training check found vectors missing and extracted them again. */
  missingRounds?: number;
}

/**
 * The coordinator's books: active jobs, and which vectors each still waits for. Counts are
 * derived from the vector cache and moved only when a pending image resolves, so a result
 * that arrives twice is counted once.
 */
export class JobTracker {
  private readonly jobs = new Map<string, ActiveJob>();
  /** `<fingerprint>.<sha256>` -> jobs waiting for that vector. */
  private readonly waiting = new Map<string, Set<string>>();

  constructor(private readonly bus: Bus) {}

  get(jobId: string): ActiveJob | undefined {
    return this.jobs.get(jobId);
  }

  has(jobId: string): boolean {
    return this.jobs.has(jobId);
  }

  values(): IterableIterator<ActiveJob> {
    return this.jobs.values();
  }

  track(manifest: DatasetManifest, status: JobStatus, backbone: ResolvedBackbone, revision: number, log: Logger): ActiveJob {
    const pathsBySha = new Map<string, string[]>();
    const sourceOfPath = new Map<string, string>();
    const add = (id: string, path: string) => {
      const l = pathsBySha.get(id);
      if (l) l.push(path);
      else pathsBySha.set(id, [path]);
    };
    const t = manifest.training;
    const copies = t?.augment ? (t.augmentCopies ?? 0) : 0;
    const percents = splitPercents(t);
    let augmented = 0;
    for (const img of manifest.images) {
      if (img.source) sourceOfPath.set(img.path, img.source);
      add(img.sha256, img.path);
      // Training images only: validation and test images are never augmented.
      if (copies && splitOf(img, percents) === 'train') {
        for (let k = 0; k < copies; k++) add(augmentedId(img.sha256, t!.augment!, k), img.path);
        augmented += copies;
      }
    }
    if (copies) status.augmented = { total: augmented, cached: status.augmented?.cached ?? 0, extracted: status.augmented?.extracted ?? 0, failed: status.augmented?.failed ?? 0 };
    const job: ActiveJob = { manifest, status, backbone, pending: new Map(), pathsBySha, sourceOfPath, log, dirty: false, revision, writes: Promise.resolve() };
    this.jobs.set(manifest.jobId, job);
    return job;
  }

  forget(job: ActiveJob): void {
    this.jobs.delete(job.manifest.jobId);
    for (const sha of job.pending.keys()) this.waiting.get(vectorKey(job.backbone.fingerprint, sha))?.delete(job.manifest.jobId);
  }

  /**
   * Derives a job's progress from the vector cache: everything not cached (and not
   * already failed) is pending. On a fresh job, hits count as cached; on a resumed one,
   * vectors beyond the recorded cached count were extracted for it.
   */
  async scan(job: ActiveJob, fresh: boolean): Promise<void> {
    const failedShas = new Set(job.status.failures.map((f) => f.sha256));
    // Unlisted failures are counted again below (cached ones), or tried again (the others).
    job.status.failuresOmitted = 0;
    const found = { plain: { vectors: 0, errors: 0 }, augmented: { vectors: 0, errors: 0 } };
    const unknown = [...job.pathsBySha.keys()].filter((sha) => {
      if (!failedShas.has(sha)) return true;
      (isAugmentedId(sha) ? found.augmented : found.plain).errors += job.pathsBySha.get(sha)!.length;
      return false;
    });
    await readCachedVectors(this.bus, job.backbone.fingerprint, unknown, (sha, v) => {
      const n = job.pathsBySha.get(sha)!.length;
      const f = isAugmentedId(sha) ? found.augmented : found.plain;
      if (!v) {
        job.pending.set(sha, n);
        this.wait(job, sha);
        return;
      }
      if (v.errorCode) {
        f.errors += n;
        this.recordFailure(job, sha, v.errorCode, v.errorMessage);
      } else f.vectors += n;
    });
    for (const [counts, f] of [[job.status.counts!, found.plain], [job.status.augmented, found.augmented]] as const) {
      if (!counts) continue;
      if (fresh) counts.cached = f.vectors;
      counts.extracted = Math.max(0, f.vectors - (counts.cached ?? 0));
      counts.failed = f.errors;
    }
  }

  private wait(job: ActiveJob, sha: string): void {
    const key = vectorKey(job.backbone.fingerprint, sha);
    let s = this.waiting.get(key);
    if (!s) this.waiting.set(key, (s = new Set()));
    s.add(job.manifest.jobId);
  }

  /**
   * Lists an image's failure on its job's record: the first MAX_LISTED_FAILURES, then only a
   * count, so a record always fits in a message however many images fail.
   */
  recordFailure(job: ActiveJob, sha: string, code: ErrorCode, message: string): void {
    // An augmented copy fails with its photo (listed once, as the photo) or is counted alone.
    if (isAugmentedId(sha) || job.status.failures.some((f) => f.sha256 === sha)) return;
    for (const path of job.pathsBySha.get(sha) ?? []) {
      if (job.status.failures.length < MAX_LISTED_FAILURES) job.status.failures.push({ path, sha256: sha, code, message: message.slice(0, 500), source: job.sourceOfPath.get(path) ?? '' });
      else job.status.failuresOmitted = (job.status.failuresOmitted ?? 0) + 1;
    }
  }

  /** The dimension the jobs waiting for this vector expect, or undefined when no job waits for it. */
  expectedDim(fp: string, sha: string): number | undefined {
    for (const id of this.waiting.get(vectorKey(fp, sha)) ?? []) {
      const job = this.jobs.get(id);
      if (job?.pending.has(sha)) return job.backbone.dim;
    }
    return undefined;
  }

  /** The jobs waiting for any of these images of one backbone. */
  waitingFor(fp: string, imageIds: readonly string[]): ActiveJob[] {
    const ids = new Set<string>();
    for (const sha of imageIds) for (const id of this.waiting.get(vectorKey(fp, sha)) ?? []) ids.add(id);
    return [...ids].map((id) => this.jobs.get(id)).filter((j): j is ActiveJob => Boolean(j));
  }

  /** Counts a result for every job waiting on it; returns those jobs. */
  resolve(fp: string, sha: string, code: ErrorCode, message: string): ActiveJob[] {
    const key = vectorKey(fp, sha);
    const ids = this.waiting.get(key);
    if (!ids) return [];
    this.waiting.delete(key);
    const touched: ActiveJob[] = [];
    for (const id of ids) {
      const job = this.jobs.get(id);
      const n = job?.pending.get(sha);
      if (!job || !n) continue;
      job.pending.delete(sha);
      const augmented = isAugmentedId(sha);
      const counts = (augmented ? job.status.augmented : job.status.counts) ?? job.status.counts!;
      if (code) {
        counts.failed = (counts.failed ?? 0) + n;
        this.recordFailure(job, sha, code, message);
        if (!augmented) job.log.warn({ paths: job.pathsBySha.get(sha), reason: errorCodeName(code), message }, 'image failed');
      } else counts.extracted = (counts.extracted ?? 0) + n;
      job.dirty = true;
      touched.push(job);
    }
    return touched;
  }

}
