import { ErrorCode, codecs, publishResults, type Bus, type ExtractionTask, type ImageVector } from '@graft/protocol';
import { failure } from './pixels.js';

/** Seconds each stage of a task took. */
export interface TaskTimings {
  fetchSeconds: number;
  decodeSeconds: number;
  inferSeconds: number;
  publishSeconds: number;
}

/** Task results kept for a redelivery; each a few KB to a few hundred KB. */
const MAX_ANSWERS = 32;

/**
 * A worker's answers: encoded as the vector batch the coordinator reads, published under the task
 * id (a retry stores nothing twice), and the last MAX_ANSWERS kept, so a task that comes back (its
 * ack lost when the broker went away) is answered again without running the backbone.
 */
export class Answers {
  private readonly kept = new Map<string, Uint8Array>();

  constructor(
    private readonly bus: Bus,
    private readonly workerId: string,
  ) {}

  /** The encoded answer to a task this worker embedded lately, if it still has it. */
  get(taskId: string): Uint8Array | undefined {
    return this.kept.get(taskId);
  }

  has(taskId: string): boolean {
    return this.kept.has(taskId);
  }

  /** Encodes a task's answer and keeps it for a redelivery. */
  encodeAndKeep(task: ExtractionTask, vectors: ImageVector[], timings: TaskTimings, taskSeq: number, runtime: string): Uint8Array {
    const batch = this.encode(task, vectors, timings, taskSeq, runtime);
    this.kept.set(task.taskId, batch);
    while (this.kept.size > MAX_ANSWERS) this.kept.delete(this.kept.keys().next().value!);
    return batch;
  }

  /** @param runtime where the backbone ran (see runtimeLabel), '' when it did not. */
  encode(task: ExtractionTask, vectors: ImageVector[], timings: TaskTimings, taskSeq = 0, runtime = ''): Uint8Array {
    return codecs.vectorBatch.encode({
      jobId: task.jobId,
      taskId: task.taskId,
      taskSeq,
      taskToken: task.token,
      backboneFingerprint: task.backbone!.fingerprint,
      workerId: this.workerId,
      vectors,
      timings,
      runtime,
    });
  }

  /** Answers every image of a task with an internal error (its last delivery failed as a whole). @returns the images answered. */
  async publishFailure(task: ExtractionTask, message: string): Promise<number> {
    const out = task.imageSha256.map((sha) => failure(sha, ErrorCode.ERROR_CODE_INTERNAL, message));
    await this.publish(task, this.encode(task, out, { fetchSeconds: 0, decodeSeconds: 0, inferSeconds: 0, publishSeconds: 0 }));
    return out.length;
  }

  /** Publishes an encoded answer (the task id is its message id). */
  publish(task: ExtractionTask, batch: Uint8Array, timeoutMs = 10_000): Promise<void> {
    return publishResults(this.bus, task, batch, timeoutMs);
  }
}

/** p, or a rejection once performance.now() passes the deadline. */
export function withDeadline<T>(p: Promise<T>, deadline: number, message: string): Promise<T> {
  let t: NodeJS.Timeout;
  const late = new Promise<T>((_, reject) => (t = setTimeout(() => reject(new Error(message)), Math.max(0, deadline - performance.now()))));
  return Promise.race([p, late]).finally(() => clearTimeout(t));
}
