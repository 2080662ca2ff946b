import { Stopped } from '@graft/head';
import type { Logger } from 'pino';
import {
  JobRecordConflict,
  JobState,
  STREAMS,
  codecs,
  deadLetter,
  hasImage,
  hasModel,
  inPool,
  isTerminal,
  isValidJobId,
  putModel,
  queuedStatus,
  readImage,
  readJobRecord,
  STORE_READ_CONCURRENCY,
  type DatasetManifest,
  type JobStatus,
  type JsMsg,
  ProtocolError,
  imagePages,
  jobIdProblem,
  removeForeignManifest,
} from '@graft/protocol';
import {
  backboneFromFiles,
  fetchBackbone,
  modelBundle,
  parseImageId,
  requestedSpec,
  resolvedFields,
  type ModelFiles,
  type ResolvedBackbone,
} from '@graft/vision';
import type { CoordinatorContext } from '../context.js';
import { ManifestEntries, type JobManifest } from '../tracking/manifest-entries.js';
import type { JobFlow } from './job-flow.js';
import type { JobRecords } from './job-records.js';
import { ManifestError, subjectProblem, validateManifest } from './manifest.js';
import { failedStatus, moveJob } from './job-state.js';
import type { ActiveJob } from '../tracking/tracker.js';

/** Photos found missing from the image store after which a job's check stops and refuses it. */
const MAX_LISTED_MISSING = 100;

/** Picks up a job that already has a record (a redelivered manifest after a restart). */
export type ResumeJob = (status: JobStatus, revision: number, manifest: ListedManifest) => Promise<void>;

/** A manifest as stored: a small one's list in it, a large one's in pages. */
export type ListedManifest = JobManifest & { images?: DatasetManifest['images'] };

/** A job failed to start after its record was written: the failure must be recorded over that revision. */
class JobStartFailed extends Error {
  constructor(
    readonly recordRevision: number,
    options: { cause: unknown },
  ) {
    super(`cannot start: ${(options.cause as Error).message}`, options);
    this.name = 'JobStartFailed';
  }
}

/**
 * Taking manifests in: checking them, resolving and storing their backbone (once per process),
 * checking their images are uploaded, writing the first extracting record and enqueueing what
 * the cache does not hold. A manifest that cannot run is recorded as a failed job.
 */
export class ManifestIntake {
  /** Jobs whose manifest is being handled right now. */
  private readonly starting = new Set<string>();
  private readonly backbones = new Map<string, Promise<ResolvedBackbone>>();

  constructor(
    private readonly ctx: CoordinatorContext,
    private readonly records: JobRecords,
    private readonly flow: JobFlow,
    private readonly resume: ResumeJob,
  ) {}

  async onManifest(msg: JsMsg): Promise<void> {
    let manifest: DatasetManifest;
    try {
      manifest = codecs.manifest.decode(msg.data, `manifest on ${msg.subject}`);
    } catch (err) {
      this.ctx.metrics.malformed.inc({ stream: STREAMS.manifests });
      return this.refuse(msg, 'malformed', (err as Error).message);
    }
    // The boundary: nothing is asked of the bus on a manifest's behalf before its id is checked
    // (a 5,000-character id in a request subject would cost the connection).
    const bad = subjectProblem(msg.subject, manifest);
    if (bad) return this.refuse(msg, 'refused', bad);
    if (this.ctx.jobs.has(manifest.jobId) || this.starting.has(manifest.jobId)) {
      msg.ack(); // a redelivery of a job in hand
      return;
    }
    const existing = await this.ctx
      .persist('reading a job record', () => readJobRecord(this.ctx.bus, manifest.jobId))
      .catch((err: unknown) => {
        if (err instanceof Stopped) throw err;
        this.ctx.log.warn({ err, job: manifest.jobId }, 'job record unreadable: the job starts afresh');
        return undefined;
      });
    if (existing && existing.status.state !== JobState.JOB_STATE_QUEUED) {
      // Redelivery after a restart: carry on from what JetStream holds.
      if (!isTerminal(existing.status.state)) await this.resume(existing.status, existing.revision, manifest);
      msg.ack();
      return;
    }
    // A new job's id must be its content's: a header raced in under somebody else's id is refused
    // and removed, leaving no record, so the id stays its owner's.
    const foreign = jobIdProblem(manifest);
    if (foreign) {
      await this.refuse(msg, 'refused', foreign, false);
      await this.ctx.persist('removing a foreign manifest', () => removeForeignManifest(this.ctx.bus, manifest.jobId));
      return;
    }
    const keepAlive = setInterval(() => msg.working(), 10_000);
    this.starting.add(manifest.jobId);
    try {
      await this.startOrRefuse(manifest, existing?.status, existing?.revision ?? 0, msg);
    } finally {
      clearInterval(keepAlive);
      this.starting.delete(manifest.jobId);
    }
    msg.ack();
  }

  /**
   * A manifest that can never run: dead-lettered with why, terminated (never redelivered), counted,
   * and, when its subject names a usable job id that has no record yet, recorded as that job's
   * failure (so `graft status` says why instead of showing it queued).
   */
  private async refuse(msg: JsMsg, outcome: 'malformed' | 'refused', reason: string, record = true): Promise<void> {
    this.ctx.metrics.manifests.inc({ outcome });
    this.ctx.log.error(
      { subject: msg.subject.slice(0, 200), reason },
      outcome === 'malformed' ? 'malformed manifest: dropped (dead-lettered)' : 'manifest refused: dead-lettered',
    );
    await deadLetter(this.ctx.bus, 'manifest', msg.data, msg.subject, reason);
    const subjectId = msg.subject.split('.').pop() ?? '';
    if (record && isValidJobId(subjectId)) {
      const now = Date.now();
      const status = failedStatus(codecs.jobStatus.create({ jobId: subjectId, name: subjectId, createdAtMs: now, updatedAtMs: now }), `refused: ${reason}`);
      // Create only: a job that has a record is somebody's, and a refused manifest never changes it.
      await this.records
        .put(status as JobStatus, 0)
        .catch((err: unknown) => this.ctx.log.debug({ err, job: subjectId }, 'refused manifest not recorded (the job has a record)'));
    }
    msg.term();
  }

  /** Starts a queued job, or records why it cannot run. @throws JobRecordConflict, Stopped (look again on redelivery). */
  private async startOrRefuse(manifest: DatasetManifest, existing: JobStatus | undefined, revision: number, msg: JsMsg): Promise<void> {
    const log = this.ctx.log.child({ job: manifest.jobId });
    let images: ManifestEntries | undefined;
    try {
      images = await this.readImages(manifest);
      validateManifest(manifest, images);
      await this.startJob(headerOf(manifest), images, revision, log);
      this.ctx.metrics.manifests.inc({ outcome: 'accepted' });
    } catch (err) {
      const cause = err instanceof JobStartFailed ? err.cause : err;
      // Not the job's fault (stopping, or somebody else wrote its record): look again on redelivery.
      if (cause instanceof JobRecordConflict || cause instanceof Stopped) throw cause;
      const reason = cause instanceof ManifestError ? cause.message : `cannot start: ${(cause as Error).message}`;
      log.error({ err }, 'job refused');
      this.ctx.metrics.manifests.inc({ outcome: 'refused' });
      if (cause instanceof ManifestError) await deadLetter(this.ctx.bus, 'manifest', msg.data, msg.subject, reason);
      const status = failedStatus(existing ?? queuedStatus(manifest, images?.length), reason);
      const at = err instanceof JobStartFailed ? err.recordRevision : revision;
      await this.ctx.persist('recording a refused job', () => this.records.put(status, at));
      this.ctx.metrics.jobsFinished.inc({ outcome: 'failed' });
      await this.records.event(status.jobId, { state: status.state });
      await this.records.event(status.jobId, { message: reason });
    }
  }

  /**
   * A job's entries, read from its manifest's pages one at a time (or from its own list when it has
   * none) into columns, each entry checked as it comes.
   * @throws ManifestError when the pages cannot be read as this job's (missing, another job's, over the limits).
   */
  async readImages(manifest: ListedManifest): Promise<ManifestEntries> {
    try {
      return await this.ctx.persist("reading the manifest's images", () => ManifestEntries.read(manifest, imagePages(this.ctx.bus, manifest)));
    } catch (err) {
      if (err instanceof ProtocolError || err instanceof RangeError) throw new ManifestError([err.message]);
      throw err;
    }
  }

  /**
   * The backbone a manifest asks for, resolved once per process: fetched under the operator's
   * source policy (no local files unless allowed; size, redirect and path checks), loaded to learn
   * its fingerprint and dimension, and put in the model store, where workers load it from.
   */
  private resolveBackbone(manifest: JobManifest, log: Logger): Promise<ResolvedBackbone> {
    const spec = requestedSpec(manifest.backbone ?? {});
    const key = JSON.stringify(spec);
    let p = this.backbones.get(key);
    if (!p) {
      p = (async () => {
        const fetched = await fetchBackbone(spec, {
          cacheDir: this.ctx.o.cacheDir,
          allowFiles: this.ctx.o.allowModelFiles,
          allowPrivateHosts: this.ctx.o.allowPrivateModelHosts,
          maxBytes: this.ctx.o.maxModelBytes,
          readUpload: (sha256, maxBytes) => this.readUpload(sha256, maxBytes),
          onWarning: (w) => log.warn(w),
          onSource: (url) => log.info({ source: url }, 'backbone loaded from this address'),
        });
        // Resolving needs the fingerprint and dimension only: no conversion here (workers convert for their runtime).
        const b = await backboneFromFiles(fetched, { runtime: 'resolve' });
        b.dispose(); // the coordinator needs the fingerprint and dimension, not the model
        await this.storeModel(b.info, fetched.files, log);
        return b.info;
      })();
      this.backbones.set(key, p);
      p.catch(() => this.backbones.delete(key)); // tried again by the next manifest naming it
    }
    return p;
  }

  /** A blob of a model its publisher uploaded (graft publish --backbone ./my-model): in the image store, checked by vision. */
  private async readUpload(sha256: string, maxBytes: number): Promise<Uint8Array> {
    const r = await this.ctx.persist('reading an uploaded model', () => readImage(this.ctx.bus, sha256, maxBytes));
    if (!r.ok) throw new Error(r.problem === 'missing' ? 'not in the cluster (was it uploaded to another one?)' : r.message);
    return r.bytes;
  }

  /** Puts a resolved backbone in the model store (once: the fingerprint names its content). */
  private async storeModel(b: ResolvedBackbone, files: ModelFiles, log: Logger): Promise<void> {
    if (await this.ctx.persist('reading the model store', () => hasModel(this.ctx.bus, b.fingerprint))) return;
    const bundle = modelBundle(files);
    await this.ctx.persist('storing a model', () => putModel(this.ctx.bus, b.fingerprint, bundle));
    log.info({ fingerprint: b.fingerprint, bytes: bundle.weights.byteLength }, 'backbone put in the model store for the workers');
  }

  /** Starts extracting a job from scratch (also a resumed job whose backbone was never resolved). */
  async startJob(manifest: JobManifest, images: ManifestEntries, revision: number, log: Logger): Promise<void> {
    const backbone = await this.resolveBackbone(manifest, log);
    const status = queuedStatus(manifest, images.length);
    status.backbone = resolvedFields(backbone);
    status.warning = backbone.warning ?? '';
    const job = this.ctx.jobs.track(manifest, images, status, backbone, revision, log);
    moveJob(job, 'extracting');
    try {
      await this.ctx.persist('reading the vector cache', () => this.ctx.jobs.scan(job, true));
      const misses = [...job.pending.keys()].sort();
      await this.checkImagesStored(job, misses);
      await this.records.write(job);
      await this.records.event(status.jobId, { state: status.state });
      this.ctx.metrics.cacheHits.inc(status.counts!.cached!);
      this.ctx.metrics.cacheMisses.inc(misses.length);
      log.info(
        { images: images.length, cached: status.counts!.cached, toExtract: misses.length, backbone: backbone.id, fingerprint: backbone.fingerprint },
        'job started',
      );
      if (misses.length) await this.flow.enqueue(job, misses);
    } catch (err) {
      this.flow.forget(job);
      if (job.revision !== revision) throw new JobStartFailed(job.revision, { cause: err });
      throw err;
    }
    this.flow.trainIfExtracted(job);
  }

  /** Refuses a manifest naming images that were never uploaded: nothing is enqueued for it. */
  private async checkImagesStored(job: ActiveJob, ids: string[]): Promise<void> {
    const missing = new Set<string>();
    // An augmented copy is made from its photo: the photo must be stored.
    const shas = [...new Set(ids.map((id) => parseImageId(id)?.sha256 ?? id))];
    await inPool(shas, STORE_READ_CONCURRENCY, async (sha) => {
      // Enough to refuse the job: the rest is not looked up (a list of 200,000 photos never uploaded).
      if (missing.size >= MAX_LISTED_MISSING) return;
      if (!(await this.ctx.persist('reading the image store', () => hasImage(this.ctx.bus, sha)))) missing.add(sha);
    });
    if (!missing.size) return;
    // Their paths only when some are missing, a few, shortened: no pass building every path of a hostile list.
    const paths = job.images
      .entriesOf(missing, MAX_LISTED_MISSING)
      .map((e) => (e.path.length > 200 ? `${e.path.slice(0, 200)}…` : e.path))
      .sort();
    const more = missing.size >= MAX_LISTED_MISSING ? ['and maybe more: the check stopped here'] : [];
    throw new ManifestError([...paths.map((p) => `${p}: not in the image store (upload it first, e.g. with graft publish)`), ...more]);
  }
}

/** A manifest without its image list (a small manifest's list lives on as an ManifestEntries, not twice). */
export function headerOf(manifest: ListedManifest): JobManifest {
  // A copy under the decoded message's prototype: its unset fields still read as their defaults.
  const header = Object.assign(Object.create(Object.getPrototypeOf(manifest) as object) as ListedManifest, manifest);
  delete header.images;
  return header;
}
