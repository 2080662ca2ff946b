import { hostname } from 'node:os';
import { TASK_ACK_WAIT_MS, TASK_MAX_DELIVER } from '@graft/protocol';
import { DEFAULT_ALLOW_MODEL_FILES, DEFAULT_ALLOW_PRIVATE_MODEL_HOSTS, DEFAULT_MAX_MODEL_BYTES } from '@graft/vision';

/** Coordinator settings as users give them; all optional. */
export interface CoordinatorOptions {
  /** Images per extraction task. Default 16. */
  taskSize?: number;
  /** AckWait of the extractor consumers it creates, ms. Default TASK_ACK_WAIT_MS (the retry policy's). */
  taskAckWaitMs?: number;
  /** MaxDeliver of the extractor consumers it creates. Default TASK_MAX_DELIVER (the retry policy's). */
  taskMaxDeliver?: number;
  /** How often job records are written while results stream in, ms. Default 250. */
  statusIntervalMs?: number;
  /**
   * How often extracting jobs are checked for images whose task left the queue unanswered (a worker
   * that took it and acknowledged it without an answer), ms. Default 30000.
   */
  reconcileIntervalMs?: number;
  /** Folder for downloaded backbones. */
  cacheDir?: string;
  /** This coordinator's name in the lease and logs. Default `<hostname>-<pid>`. */
  coordinatorId?: string;
  /** The coordinator lease's TTL, ms: a standby takes over this long after the leader stops renewing. Default 10000. */
  leaseTtlMs?: number;
  /**
   * Whether manifests may name `file://` backbones, read from this machine's disk. Default
   * DEFAULT_ALLOW_MODEL_FILES (false, the model policy's): anyone who can publish a manifest could otherwise make the coordinator read any file.
   */
  allowModelFiles?: boolean;
  /**
   * Whether manifests may name backbone URLs on this machine or a private network. Default
   * DEFAULT_ALLOW_PRIVATE_MODEL_HOSTS (false): a manifest could otherwise probe the inside network.
   */
  allowPrivateModelHosts?: boolean;
  /** Largest backbone a manifest may name, bytes. Default DEFAULT_MAX_MODEL_BYTES (1 GiB, the model policy's). */
  maxModelBytes?: number;
}

export type ResolvedCoordinatorOptions = Required<Omit<CoordinatorOptions, 'cacheDir'>> & { cacheDir?: string };

/** Fills defaults. @throws RangeError naming the bad field. */
export function resolveCoordinatorOptions(o: CoordinatorOptions = {}): ResolvedCoordinatorOptions {
  const r = {
    coordinatorId: o.coordinatorId ?? `${hostname()}-${process.pid}`,
    leaseTtlMs: o.leaseTtlMs ?? 10_000,
    allowModelFiles: o.allowModelFiles ?? DEFAULT_ALLOW_MODEL_FILES,
    allowPrivateModelHosts: o.allowPrivateModelHosts ?? DEFAULT_ALLOW_PRIVATE_MODEL_HOSTS,
    maxModelBytes: o.maxModelBytes ?? DEFAULT_MAX_MODEL_BYTES,
    taskSize: o.taskSize ?? 16,
    taskAckWaitMs: o.taskAckWaitMs ?? TASK_ACK_WAIT_MS,
    taskMaxDeliver: o.taskMaxDeliver ?? TASK_MAX_DELIVER,
    statusIntervalMs: o.statusIntervalMs ?? 250,
    reconcileIntervalMs: o.reconcileIntervalMs ?? 30_000,
    cacheDir: o.cacheDir,
  };
  for (const k of ['taskSize', 'taskAckWaitMs', 'taskMaxDeliver', 'statusIntervalMs', 'reconcileIntervalMs', 'leaseTtlMs', 'maxModelBytes'] as const) {
    if (!Number.isInteger(r[k]) || r[k] < 1) throw new RangeError(`${k} must be a positive integer, got ${r[k]}`);
  }
  return r;
}
