import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { ExtractionTask, ImageVector, JsMsg } from '@graft/protocol';
import type { PixelTiming } from './pixels.js';
import type { ClaimKeeper } from './task-claims.js';

/* A worker as its users see it, and a task as the worker holds it. */

export type WorkerState = 'running' | 'closing' | 'closed';

/** A running extractor. Create with {@link startWorker}. */
export interface Worker {
  readonly id: string;
  readonly state: WorkerState;
  /** Totals since start: tasks answered, images embedded or failed, backbone forward passes. */
  readonly stats: Readonly<{ tasks: number; images: number; failed: number; backboneCalls: number }>;
  /** Resolves when the worker has stopped. */
  readonly closed: Promise<void>;
  /**
   * Stops pulling, lets the task in hand finish (up to graceMs), hands back what it
   * has not started (nak, so it is redelivered at once), then resolves. Idempotent.
   * The caller closes the bus afterwards.
   */
  close(): Promise<void>;
}

export interface WorkerDeps {
  logger: Logger;
  registry?: Registry;
  /** Where backbones run here (`onnxruntime/cpu`, `onnxruntime/cuda`, or a TF.js backend): picks the default batch size. */
  backend?: string;
}

/** A task pulled and decoded ahead of inference. */
export interface Prepared {
  msg: JsMsg;
  task: ExtractionTask;
  pixels: Promise<(Uint8Array | ImageVector)[]>; // per image: pixels, or the error that ends it
  timing: PixelTiming; // filled in as the stages finish
  /** Set once the task's claim is this worker's: renewed while held, released when handed back. */
  owned: boolean;
  /** Set once the worker is done with it (counted out of the tasks in flight once). */
  settled?: boolean;
  claimKeeper?: ClaimKeeper;
  keepAlive: NodeJS.Timeout;
}
