import type { Logger } from 'pino';
import { errorCodeName, scanCachedVectors, type Bus, type ErrorCode, type JobStatus } from '@graft/protocol';
import { isAugmentedId, type ResolvedBackbone } from '@graft/vision';
import type { ManifestEntries, JobManifest } from './manifest-entries.js';
import { JobImages } from './job-images.js';
import { phaseOf, type JobPhase } from '../flow/job-state.js';

/** Failures listed on a job record; the rest are counted. About 200 bytes each, far below max_payload. */
const MAX_LISTED_FAILURES = 200;

/** A job the coordinator is extracting or training, with what it still waits for. */
export interface ActiveJob {
  /** The manifest's header; its entries are in `images`. */
  manifest: JobManifest;
  /** The manifest's entries, in columns. */
  images: ManifestEntries;
  status: JobStatus;
  /** Where the job is (the job-state module moves it; nothing else writes its state). */
  phase: JobPhase;
  backbone: ResolvedBackbone;
  /** Every image id (a sha256, or an augmented copy's `<sha256>_<spec>_<variant>`) and which the job still waits for. */
  pending: JobImages;
  log: Logger;
  /** Counts moved since the record was last written. */
  dirty: boolean;
  /** Revision of the job record as this coordinator last wrote it (0: not written yet). */
  revision: number;
  /** The last record write in flight: writes are chained, never concurrent. */
  writes: Promise<void>;
  /** Enqueues of this job in progress: while any runs, its images are not all on their way yet. */
  enqueuing?: number;
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

  track(manifest: JobManifest, images: ManifestEntries, status: JobStatus, backbone: ResolvedBackbone, revision: number, log: Logger): ActiveJob {
    const pending = new JobImages(images, manifest.training);
    if (pending.augmented)
      status.augmented = {
        total: pending.augmented,
        cached: status.augmented?.cached ?? 0,
        extracted: status.augmented?.extracted ?? 0,
        failed: status.augmented?.failed ?? 0,
      };
    const job: ActiveJob = {
      manifest,
      images,
      status,
      phase: phaseOf(status.state),
      backbone,
      pending,
      log,
      dirty: false,
      revision,
      writes: Promise.resolve(),
    };
    this.jobs.set(manifest.jobId, job);
    return job;
  }

  forget(job: ActiveJob): void {
    this.jobs.delete(job.manifest.jobId);
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
    const unknown = [...job.pending.all()].filter((sha) => {
      if (!failedShas.has(sha)) return true;
      (isAugmentedId(sha) ? found.augmented : found.plain).errors += job.pending.entriesOf(sha);
      return false;
    });
    await scanCachedVectors(this.bus, job.backbone.fingerprint, unknown, job.backbone.dim, (sha, v) => {
      const n = job.pending.entriesOf(sha);
      const f = isAugmentedId(sha) ? found.augmented : found.plain;
      if (!v) {
        job.pending.wait(sha);
        return;
      }
      if (v.errorCode) {
        f.errors += n;
        this.recordFailure(job, sha, v.errorCode, v.errorMessage ?? '');
      } else f.vectors += n;
    });
    for (const [counts, f] of [
      [job.status.counts!, found.plain],
      [job.status.augmented, found.augmented],
    ] as const) {
      if (!counts) continue;
      if (fresh) counts.cached = f.vectors;
      counts.extracted = Math.max(0, f.vectors - (counts.cached ?? 0));
      counts.failed = f.errors;
    }
  }

  /**
   * Lists an image's failure on its job's record: the first MAX_LISTED_FAILURES, then only a
   * count, so a record always fits in a message however many images fail.
   * @returns the paths it listed.
   */
  recordFailure(job: ActiveJob, sha: string, code: ErrorCode, message: string): string[] {
    // An augmented copy fails with its photo (listed once, as the photo) or is counted alone.
    if (isAugmentedId(sha) || job.status.failures.some((f) => f.sha256 === sha)) return [];
    const s = job.status;
    // Past the listed ones only a count: no pass over the manifest per failure (a million corrupt photos).
    if (s.failures.length >= MAX_LISTED_FAILURES) {
      s.failuresOmitted = (s.failuresOmitted ?? 0) + job.pending.entriesOf(sha);
      return [];
    }
    const listed: string[] = [];
    for (const { path, source } of job.images.entriesOf(new Set([sha]))) {
      if (s.failures.length < MAX_LISTED_FAILURES) {
        s.failures.push({ path, sha256: sha, code, message: message.slice(0, 500), source });
        listed.push(path);
      } else s.failuresOmitted = (s.failuresOmitted ?? 0) + 1;
    }
    return listed;
  }

  /** The dimension the jobs waiting for this vector expect, or undefined when no job waits for it. */
  expectedDim(fp: string, sha: string): number | undefined {
    for (const job of this.jobs.values()) if (job.backbone.fingerprint === fp && job.pending.has(sha)) return job.backbone.dim;
    return undefined;
  }

  /** The jobs waiting for any of these images of one backbone (a handful of jobs run at once: a scan of them). */
  waitingFor(fp: string, imageIds: readonly string[]): ActiveJob[] {
    return [...this.jobs.values()].filter((job) => job.backbone.fingerprint === fp && imageIds.some((id) => job.pending.has(id)));
  }

  /** Counts a result for every job waiting on it; returns those jobs. */
  resolve(fp: string, sha: string, code: ErrorCode, message: string): ActiveJob[] {
    const touched: ActiveJob[] = [];
    for (const job of this.jobs.values()) {
      if (job.backbone.fingerprint !== fp) continue;
      const n = job.pending.settle(sha);
      if (!n) continue;
      const augmented = isAugmentedId(sha);
      const counts = (augmented ? job.status.augmented : job.status.counts) ?? job.status.counts!;
      if (code) {
        counts.failed = (counts.failed ?? 0) + n;
        const paths = this.recordFailure(job, sha, code, message);
        if (!augmented) job.log.warn({ sha256: sha, paths, reason: errorCodeName(code), message }, 'image failed');
      } else counts.extracted = (counts.extracted ?? 0) + n;
      job.dirty = true;
      touched.push(job);
    }
    return touched;
  }
}
