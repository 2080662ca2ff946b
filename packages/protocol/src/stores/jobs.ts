import { handles, type Bus } from '../bus.js';
import { codecs, isTerminal, JobState, type DatasetManifest, type JobEvent, type JobStatus } from '../messages.js';
import { JobRecordConflict, isRevisionConflict } from '../errors.js';
import { BUCKETS, BUCKET_STREAMS, eventSubject } from '../names.js';
import { readManifestHeader } from './manifests.js';

/*
 * Jobs: their records (one JobStatus per job in graft-jobs, under the job id) and their events
 * (GRAFT_EVENTS). This module is the only reader and writer of both (manifests.ts owns the
 * manifests). Record writes name the revision they read, so two writers (a publisher and a
 * coordinator, or two coordinators) can never overwrite each other.
 */

/** A job record as stored, with the revision a later write must name. */
export interface JobRecord {
  status: JobStatus;
  revision: number;
}

/** The first record of a job, as its publisher writes it: QUEUED, counts from the manifest (or `total`, its entries counted). */
export function queuedStatus(
  manifest: Pick<DatasetManifest, 'jobId' | 'name' | 'classes' | 'skipped' | 'imagePages' | 'imageCount'> & { images?: unknown[] },
  total?: number,
): JobStatus {
  const now = Date.now();
  return codecs.jobStatus.create({
    jobId: manifest.jobId,
    name: manifest.name,
    state: JobState.JOB_STATE_QUEUED,
    // A paged manifest's header says how many photos its pages hold: a status needs no page.
    counts: { total: total ?? (manifest.imagePages ? Number(manifest.imageCount) : (manifest.images?.length ?? 0)), cached: 0, extracted: 0, failed: 0 },
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
    return await handles(bus).jobs.create(status.jobId, codecs.jobStatus.encode(status));
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
    return await handles(bus).jobs.update(status.jobId, codecs.jobStatus.encode(status), revision);
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
  const e = await handles(bus).jobs.get(jobId);
  if (!e || e.length === 0 || e.operation !== 'PUT') return undefined;
  return { status: codecs.jobStatus.decode(e.value, `job record ${jobId}`), revision: e.revision };
}

/**
 * A job's record, or undefined. A job published but not yet taken by a coordinator has no record
 * (the coordinator writes the first one): it is shown as queued, from its manifest.
 */
export async function readJob(bus: Bus, jobId: string): Promise<JobStatus | undefined> {
  const rec = await readJobRecord(bus, jobId);
  if (rec) return rec.status;
  const manifest = await readManifestHeader(bus, jobId).catch(() => undefined); // unreadable: the coordinator fails the job
  return manifest && queuedStatus(manifest);
}

/**
 * The ids of every job with a record (a deleted one's id may be among them: its read says none).
 * From the stream's subjects, not a key watch: reading the list makes no consumer on the server.
 */
export async function listJobIds(bus: Bus): Promise<string[]> {
  const prefix = `$KV.${BUCKETS.jobs}.`;
  const info = await handles(bus).jsm.streams.info(BUCKET_STREAMS.jobs, { subjects_filter: `${prefix}>` });
  return Object.keys(info.state.subjects ?? {}).map((s) => s.slice(prefix.length));
}

/**
 * Every readable job record, oldest first. A record that cannot be read or decoded is left out of
 * the list and handed to `onUnreadable` (with why), so the caller can say so.
 */
export async function listJobs(bus: Bus, onUnreadable: (jobId: string, err: unknown) => void = () => undefined): Promise<JobStatus[]> {
  const out: JobStatus[] = [];
  for (const k of await listJobIds(bus)) {
    try {
      const s = await readJob(bus, k);
      if (s) out.push(s);
    } catch (err) {
      onUnreadable(k, err);
    }
  }
  return out.sort((a, b) => Number(a.createdAtMs) - Number(b.createdAtMs));
}

/** How often a follower reads a job's record again, ms. */
const FOLLOW_POLL_MS = 500;

/**
 * Every version of a job's record from now on (the current one first, then each one written
 * afterwards that this reader saw), ending after the first final state (done or failed). Read by
 * direct gets every half second, not a watch: a watch is a consumer, which the roles that follow
 * jobs (the command line, monitors) may not create.
 * @param stop when it resolves, the follow ends.
 */
export async function* watchJob(bus: Bus, jobId: string, stop?: Promise<unknown>): AsyncGenerator<JobStatus> {
  let stopped = false;
  void stop?.then(() => (stopped = true));
  let last = -1;
  while (!stopped) {
    const e = await handles(bus).jobs.get(jobId);
    if (e && e.operation === 'PUT' && e.revision !== last) {
      last = e.revision;
      const s = codecs.jobStatus.decode(e.value, `job record ${jobId}`);
      yield s;
      if (isTerminal(s.state)) return;
    }
    await Promise.race([new Promise((r) => setTimeout(r, FOLLOW_POLL_MS)), stop]);
  }
}

/**
 * Calls onState with every job's state: each record's latest first, then every change, until the
 * returned stop is called. A deleted or unreadable record reports undefined.
 */
export async function watchJobStates(bus: Bus, onState: (jobId: string, state: JobState | undefined) => void): Promise<() => void> {
  const watch = await handles(bus).jobs.watch({ key: '>' });
  void (async () => {
    for await (const e of watch) {
      let state: JobState | undefined;
      try {
        state = e.operation === 'PUT' ? codecs.jobStatus.decode(e.value, `job record ${e.key}`).state : undefined;
      } catch {
        state = undefined;
      }
      onState(e.key, state);
    }
  })();
  return () => watch.stop();
}

/** What an event says (one of its oneof fields). */
export type JobEventBody = Omit<Parameters<typeof codecs.jobEvent.encode>[0], 'jobId' | 'atMs'>;

/** Appends to a job's history (graft.events.<job>): for watchers, never needed for correctness. */
export async function publishJobEvent(bus: Bus, jobId: string, body: JobEventBody): Promise<void> {
  const msg: Partial<JobEvent> = { jobId, atMs: Date.now(), ...body };
  await handles(bus).js.publish(eventSubject(jobId), codecs.jobEvent.encode(msg));
}
