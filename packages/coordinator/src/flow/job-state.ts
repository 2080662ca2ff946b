import { Stopped } from '@graft/head';
import { JobRecordConflict, JobState, jobStateName, type JobStatus } from '@graft/protocol';

/*
 * A job's states and the moves between them: the one module that writes a job's state. Intake,
 * results, recovery and training ask it to move a job; what a stop means (pause, or fail) is decided
 * here too, in one place.
 *
 *   queued ─▶ extracting ─▶ training ─▶ auditing ─▶ done
 *                 │            │          ▲      ▲
 *                 ├─▶ sweeping ┴──────────┘      │     training, sweeping, auditing, predicting ─▶ extracting
 *                 └─▶ predicting ────────────────┘     (vectors a broker lost, found before training)
 *                     (graft predict: a head applied, none trained)
 *   any active state ─▶ paused ─▶ the state it was in (or the training that leads back to it)
 *   any state but done ─▶ failed
 *
 * `paused` is this coordinator's alone: asked to stop (closing, or its lease lost or stale), it leaves
 * the job's record as it was, so the next leader (or this one, once its lease is fresh) resumes it.
 */

export type JobPhase = 'queued' | 'extracting' | 'training' | 'sweeping' | 'auditing' | 'predicting' | 'paused' | 'done' | 'failed';

/** Every move a job may make. A move not listed is a bug in the coordinator, and throws. */
export const TRANSITIONS: Readonly<Record<JobPhase, readonly JobPhase[]>> = {
  queued: ['extracting', 'failed'],
  extracting: ['training', 'sweeping', 'predicting', 'paused', 'failed'],
  training: ['auditing', 'done', 'extracting', 'paused', 'failed'],
  sweeping: ['auditing', 'done', 'extracting', 'paused', 'failed'],
  auditing: ['done', 'extracting', 'paused', 'failed'],
  predicting: ['done', 'extracting', 'paused', 'failed'],
  paused: ['extracting', 'training', 'sweeping', 'auditing', 'predicting', 'failed'],
  done: [],
  failed: [],
};

/** The record's state for each phase (a paused job's record keeps the state it had). */
const WIRE: Readonly<Record<Exclude<JobPhase, 'paused'>, JobState>> = {
  queued: JobState.JOB_STATE_QUEUED,
  extracting: JobState.JOB_STATE_EXTRACTING,
  training: JobState.JOB_STATE_TRAINING,
  sweeping: JobState.JOB_STATE_SWEEPING,
  auditing: JobState.JOB_STATE_AUDITING,
  predicting: JobState.JOB_STATE_PREDICTING,
  done: JobState.JOB_STATE_DONE,
  failed: JobState.JOB_STATE_FAILED,
};

/** A job as this module moves it: its record's status and the phase the coordinator holds it in. */
export interface StatefulJob {
  status: JobStatus;
  phase: JobPhase;
  /** Counts or state moved since the record was last written. */
  dirty: boolean;
}

/** A move the table does not allow. */
export class IllegalTransition extends Error {
  constructor(jobId: string, from: JobPhase, to: JobPhase) {
    super(`job ${jobId} cannot move from ${from} to ${to}`);
    this.name = 'IllegalTransition';
  }
}

/** The phase a stored record's state stands for (what a job resumes in). */
export function phaseOf(state: JobState | null | undefined): JobPhase {
  const found = (Object.entries(WIRE) as [JobPhase, JobState][]).find(([, s]) => s === state);
  if (!found) throw new RangeError(`no job phase for state ${jobStateName(state)}`);
  return found[0];
}

/**
 * Moves a job: its phase, and its record's state (for every phase but paused), marked to be written.
 * A failed job gets `error`. @throws IllegalTransition for a move the table does not allow.
 */
export function moveJob(job: StatefulJob, to: JobPhase, error?: string): void {
  if (to === 'paused' && job.phase === 'paused') return; // paused by its term's end, then by its own stop
  if (!TRANSITIONS[job.phase].includes(to)) throw new IllegalTransition(job.status.jobId, job.phase, to);
  job.phase = to;
  if (to !== 'paused') job.status.state = WIRE[to];
  if (to === 'failed') job.status.error = error ?? 'failed';
  job.dirty = true;
}

/** The phase a job works in once extracted: applying a head (graft predict), training a grid of heads, or one. */
export function trainingPhase(m: { training?: { sweep?: boolean | null } | null; predict?: unknown }): 'training' | 'sweeping' | 'predicting' {
  if (m.predict) return 'predicting';
  return m.training?.sweep ? 'sweeping' : 'training';
}

/**
 * A job this coordinator does not hold (a refused manifest, an unreadable stored one) fails: the
 * status it records. The state for a job with no phase yet.
 */
export function failedStatus(status: JobStatus, error: string): JobStatus {
  status.state = JobState.JOB_STATE_FAILED;
  status.error = error;
  return status;
}

/** What ended a job's work, and what follows. */
export type StopOutcome =
  /** Asked to stop (closing, the lease lost or stale): paused, resumed by whoever leads. */
  | 'pause'
  /** Its record was written by someone else: picked up again from what is stored. */
  | 'reclaim'
  /** The job's own failure. */
  | 'fail';

/** The one decision of what an error that ended a job's work means. */
export function stopOutcome(err: unknown): StopOutcome {
  if (err instanceof Stopped) return 'pause';
  if (err instanceof JobRecordConflict) return 'reclaim';
  return 'fail';
}
