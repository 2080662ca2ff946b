import { performance } from 'node:perf_hooks';
import { ErrorCode, encodeVector, type ExtractionTask, type ImageVector } from '@graft/protocol';
import type { Backbone } from '@graft/vision';
import { failure } from './pixels.js';

/** What one backbone pass over a task needs from its worker. */
export interface InferenceContext {
  /** Most images per backbone call. */
  inferBatchSize: number;
  /** The task's AckWait, ms: each call must take well under it (the lease is renewed between calls). */
  ackWaitMs: number;
  /** For the TIMEOUT message. */
  taskTimeoutMs: number;
  /** Called after each backbone call (renews the lease, counts the call). */
  afterCall: () => void;
}

/**
 * Runs a task's decoded images through a backbone in chunks sized from the measured seconds per
 * image, so that each call fits well inside the lease: on TF.js inference holds the event loop, so
 * the lease can only be renewed between calls (ONNX Runtime's thread leaves it free, and the chunks
 * then bound how long a deadline can be overrun).
 */
export class Inference {
  /** Measured backbone seconds per image, per fingerprint. */
  private readonly secondsPerImage = new Map<string, number>();

  /** Images per call for this backbone and lease. */
  private chunkSize(fingerprint: string, c: InferenceContext): number {
    const spi = this.secondsPerImage.get(fingerprint);
    if (!spi) return 1; // first call: measure
    return Math.max(1, Math.min(c.inferBatchSize, Math.floor(((c.ackWaitMs / 1000) * 0.4) / spi)));
  }

  /** One answer per image: its vector, the failure it came with, or TIMEOUT once the deadline has passed. */
  async embed(task: ExtractionTask, backbone: Backbone, items: (Uint8Array | ImageVector)[], deadline: number, c: InferenceContext): Promise<ImageVector[]> {
    const ok = items.map((x, i) => [x, i] as const).filter((e): e is readonly [Uint8Array, number] => e[0] instanceof Uint8Array);
    const out: ImageVector[] = items.map((x) => (x instanceof Uint8Array ? ({} as ImageVector) : x));
    const fp = backbone.info.fingerprint;
    for (let i = 0; i < ok.length;) {
      if (performance.now() > deadline) {
        // The deadline is checked between backbone calls (a call is not interrupted).
        for (const [, idx] of ok.slice(i))
          out[idx] = failure(task.imageSha256[idx], ErrorCode.ERROR_CODE_TIMEOUT, `the task ran past its ${c.taskTimeoutMs} ms limit`);
        break;
      }
      const chunk = ok.slice(i, i + this.chunkSize(fp, c));
      i += chunk.length;
      const tc = performance.now();
      const vectors = await backbone.embed(chunk.map((x) => x[0]));
      const spi = (performance.now() - tc) / 1000 / chunk.length;
      this.secondsPerImage.set(fp, 0.7 * (this.secondsPerImage.get(fp) ?? spi) + 0.3 * spi);
      c.afterCall();
      chunk.forEach(([, idx], k) => {
        out[idx] = { sha256: task.imageSha256[idx], vector: encodeVector(vectors[k], task.vectorDtype), dim: vectors[k].length, dtype: task.vectorDtype };
      });
    }
    return out;
  }
}
