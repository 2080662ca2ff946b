/**
 * Work asked to stop before it finished: the process is closing, or its coordinator no longer leads.
 * Nothing is wrong with the job; whoever carries on resumes it from what was stored (a head's
 * checkpoint, a sweep's finished heads, an audit's finished folds). The one error every stop throws.
 */
export class Stopped extends Error {
  constructor(
    /** What stopped, and how far it got ("training after epoch 12"). */
    readonly what: string,
    options?: { cause?: unknown },
  ) {
    super(`stopped: ${what}`, options);
    this.name = 'Stopped';
  }
}
