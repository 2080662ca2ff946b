import { JetStreamApiError } from '@nats-io/jetstream';
import type { Bus } from './bus.js';
import { codecs, isTerminal, JobState, type DatasetManifest, type JobEvent, type JobStatus } from './messages.js';
import { ProtocolError } from './errors.js';
import { STREAMS, eventSubject, manifestSubject } from './names.js';

/**
 * Job records: one JobStatus per job in the jobs bucket, under the job id. This file is
 * their only reader and writer. Writes name the revision they read, so two writers
 * (a publisher and a coordinator, or two coordinators) can never overwrite each other.
 */

/** A job record as stored, with the revision a later write must name. */
export interface JobRecord {
  status: JobStatus;
  revision: number;
}

/** Somebody else wrote the record since it was read: the write was refused. */
export class JobRecordConflict extends Error {
  constructor(
    readonly jobId: string,
    options?: { cause?: unknown },
  ) {
    super(`job record ${jobId} was changed by another writer`, options);
    this.name = 'JobRecordConflict';
  }
}

/** The first record of a job, as its publisher writes it: QUEUED, counts from the manifest. */
export function queuedStatus(manifest: Pick<DatasetManifest, 'jobId' | 'name' | 'classes' | 'images' | 'skipped'>): JobStatus {
  const now = Date.now();
  return codecs.jobStatus.create({
    jobId: manifest.jobId,
    name: manifest.name,
    state: JobState.JOB_STATE_QUEUED,
    counts: { total: manifest.images.length, cached: 0, extracted: 0, failed: 0 },
    classes: manifest.classes,
    createdAtMs: now,
    updatedAtMs: now,
    skipped: manifest.skipped.length,
  });
}

/**
 * Writes a new job's first record.
 * @returns its revision.
 * @throws JobRecordConflict when the job already has a record.
 */
export async function createJobRecord(bus: Bus, status: JobStatus): Promise<number> {
  status.updatedAtMs = Date.now();
  try {
    return await bus.jobs.create(status.jobId, codecs.jobStatus.encode(status));
  } catch (err) {
    if (isRevisionConflict(err)) throw new JobRecordConflict(status.jobId, { cause: err });
    throw err;
  }
}

/**
 * Replaces a job's record, if nobody wrote it since `revision` was read.
 * @returns the new revision.
 * @throws JobRecordConflict when somebody did.
 */
export async function writeJobRecord(bus: Bus, status: JobStatus, revision: number): Promise<number> {
  status.updatedAtMs = Date.now();
  try {
    return await bus.jobs.update(status.jobId, codecs.jobStatus.encode(status), revision);
  } catch (err) {
    if (isRevisionConflict(err)) throw new JobRecordConflict(status.jobId, { cause: err });
    throw err;
  }
}

/**
 * A job's record and revision, or undefined when it has none.
 * @throws ProtocolError when the stored bytes are not a JobStatus.
 */
export async function readJobRecord(bus: Bus, jobId: string): Promise<JobRecord | undefined> {
  const e = await bus.jobs.get(jobId);
  if (!e || e.length === 0 || e.operation !== 'PUT') return undefined;
  return { status: codecs.jobStatus.decode(e.value, `job record ${jobId}`), revision: e.revision };
}

/**
 * A job's manifest as published (the manifests stream keeps the last one per job).
 * @returns undefined when the stream no longer holds it.
 * @throws ProtocolError when what it holds is not a readable manifest of this job.
 */
export async function readManifest(bus: Bus, jobId: string): Promise<DatasetManifest | undefined> {
  const stored = await bus.jsm.streams.getMessage(STREAMS.manifests, { last_by_subj: manifestSubject(jobId) });
  if (!stored) return undefined;
  const manifest = codecs.manifest.decode(stored.data, `stored manifest of ${jobId}`);
  if (manifest.jobId !== jobId) throw new ProtocolError(`the stored manifest of ${jobId} is for job ${JSON.stringify(manifest.jobId)}`);
  return manifest;
}

/** A job's record, or undefined. */
export async function readJob(bus: Bus, jobId: string): Promise<JobStatus | undefined> {
  return (await readJobRecord(bus, jobId))?.status;
}

/** Every readable job record, oldest first. */
export async function listJobs(bus: Bus): Promise<JobStatus[]> {
  const out: JobStatus[] = [];
  for await (const k of await bus.jobs.keys()) {
    const s = await readJob(bus, k).catch(() => undefined);
    if (s) out.push(s);
  }
  return out.sort((a, b) => Number(a.createdAtMs) - Number(b.createdAtMs));
}

/**
 * Every version of a job's record from now on (the current one first), ending after the
 * first final state (done or failed).
 */
export async function* watchJob(bus: Bus, jobId: string): AsyncGenerator<JobStatus> {
  const watch = await bus.jobs.watch({ key: jobId });
  try {
    for await (const e of watch) {
      if (e.operation !== 'PUT') continue;
      const s = codecs.jobStatus.decode(e.value, `job record ${jobId}`);
      yield s;
      if (isTerminal(s.state)) return;
    }
  } finally {
    watch.stop();
  }
}

/** What an event says (one of its oneof fields). */
export type JobEventBody = Omit<Parameters<typeof codecs.jobEvent.encode>[0], 'jobId' | 'atMs'>;

/** Appends to a job's history (graft.events.<job>): for watchers, never needed for correctness. */
export async function publishJobEvent(bus: Bus, jobId: string, body: JobEventBody): Promise<void> {
  const msg: Partial<JobEvent> = { jobId, atMs: Date.now(), ...body };
  await bus.js.publish(eventSubject(jobId), codecs.jobEvent.encode(msg));
}

/** Whether a KV write failed because the key's revision was not the one named (someone else wrote it). */
export function isRevisionConflict(err: unknown): boolean {
  return (err instanceof JetStreamApiError && err.code === 10071) || /wrong last sequence|key exists/i.test((err as Error)?.message ?? '');
}
