import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Stopped } from '@graft/head';
import {
  IllegalTransition,
  TRANSITIONS,
  failedStatus,
  moveJob,
  phaseOf,
  stopOutcome,
  trainingPhase,
  type JobPhase,
  type StatefulJob,
} from '@graft/coordinator';
import { JobRecordConflict, JobState, codecs, type JobStatus } from '@graft/protocol/testing';

/* The job state machine (coordinator flow/job-state.ts): every move in its table, and only those; what a stop means. */

const PHASES = Object.keys(TRANSITIONS) as JobPhase[];
const job = (phase: JobPhase, state: JobState = JobState.JOB_STATE_EXTRACTING): StatefulJob => ({
  status: codecs.jobStatus.create({ jobId: 'j', state }) as JobStatus,
  phase,
  dirty: false,
});

describe('job state machine', () => {
  for (const from of PHASES) {
    for (const to of PHASES) {
      const allowed = TRANSITIONS[from].includes(to) || (from === 'paused' && to === 'paused');
      it(`${from} -> ${to}: ${allowed ? 'moves' : 'refused'}`, () => {
        const j = job(from, JobState.JOB_STATE_TRAINING);
        if (!allowed) {
          assert.throws(() => moveJob(j, to), IllegalTransition);
          assert.equal(j.phase, from, 'a refused move changes nothing');
          return;
        }
        moveJob(j, to, to === 'failed' ? 'why' : undefined);
        assert.equal(j.phase, to);
        // A paused job's record keeps its state, for the next leader to resume from.
        if (to === 'paused') assert.equal(j.status.state, JobState.JOB_STATE_TRAINING);
        else assert.equal(phaseOf(j.status.state), to, 'the record says the phase');
        if (to === 'failed') assert.equal(j.status.error, 'why');
        assert.equal(j.dirty, from !== to || to !== 'paused');
      });
    }
  }

  it('done and failed are final; every active phase can pause and fail', () => {
    assert.deepEqual(TRANSITIONS.done, []);
    assert.deepEqual(TRANSITIONS.failed, []);
    for (const p of ['extracting', 'training', 'sweeping', 'auditing'] as const) {
      assert.ok(TRANSITIONS[p].includes('paused'), `${p} pauses`);
      assert.ok(TRANSITIONS[p].includes('failed'), `${p} fails`);
      assert.ok(TRANSITIONS.paused.includes(p), `paused resumes ${p}`);
    }
  });

  it('every stop of training, a sweep, an audit or a bus wait pauses; a record written by another reclaims; anything else fails', () => {
    for (const what of ['training after epoch 3', 'sweep after 2 heads', 'audit after 1 folds', 'writing a job record: the coordinator is closing'])
      assert.equal(stopOutcome(new Stopped(what)), 'pause', what);
    assert.equal(stopOutcome(new JobRecordConflict('j')), 'reclaim');
    assert.equal(stopOutcome(new Error('the loss is not finite')), 'fail');
    assert.equal(stopOutcome('not even an error'), 'fail');
  });

  it('a record resumes in its phase; a job trains in a sweep or not; a job not held fails by its status alone', () => {
    assert.equal(phaseOf(JobState.JOB_STATE_AUDITING), 'auditing');
    assert.equal(phaseOf(JobState.JOB_STATE_SWEEPING), 'sweeping');
    assert.throws(() => phaseOf(JobState.JOB_STATE_UNSPECIFIED), RangeError);
    assert.equal(phaseOf(JobState.JOB_STATE_PREDICTING), 'predicting');
    assert.equal(trainingPhase({ training: { sweep: true } }), 'sweeping');
    assert.equal(trainingPhase({ training: {} }), 'training');
    assert.equal(trainingPhase({ training: {}, predict: { headSha256: 'x' } }), 'predicting');
    const s = failedStatus(codecs.jobStatus.create({ jobId: 'x', state: JobState.JOB_STATE_QUEUED }) as JobStatus, 'refused: no images');
    assert.equal(s.state, JobState.JOB_STATE_FAILED);
    assert.equal(s.error, 'refused: no images');
  });
});
