import { nanos } from '@nats-io/transport-node';
import { DiscardPolicy, RetentionPolicy, StorageType, type JetStreamManager, type StreamConfig } from '@nats-io/jetstream';
import { BUCKETS, BUCKET_STREAMS, STREAMS, SUBJECTS } from './names.js';
import { TASK_CLAIM_TTL_MS } from './policy/retry.js';

/*
 * How each of graft's streams is configured, and the caps a deployment may set on its stores: one
 * table, read by the topology when it creates what is missing.
 */

/** Stores whose size a deployment can cap (`graft init --max-bytes STORE=SIZE`). */
export const STORE_LIMIT_NAMES = ['images', 'vectors', 'artifacts', 'models', 'results', 'manifests', 'prepared'] as const;
export type StoreLimitName = (typeof STORE_LIMIT_NAMES)[number];

/**
 * Default caps, bytes (-1: none but the server's own). Results drain as the coordinator reads them:
 * 1 GiB of them means it has been away a long time, and workers then hold their answers and retry.
 * Prepared inputs are a cache that drops its oldest copies at its cap (2 GiB: about 14,000 photos at
 * 224 px); nats-server sets a cap's bytes aside when the stream is made, so the default stays small.
 */
export const DEFAULT_STORE_LIMITS: Readonly<Record<StoreLimitName, number>> = {
  images: -1,
  vectors: -1,
  artifacts: -1,
  models: -1,
  results: 1024 ** 3,
  manifests: -1,
  prepared: 2 * 1024 ** 3,
};

/** The stream under each capped store. */
const LIMITED_STREAMS: Readonly<Record<StoreLimitName, string>> = {
  images: STREAMS.images,
  vectors: BUCKET_STREAMS.vectors,
  artifacts: BUCKET_STREAMS.artifacts,
  models: BUCKET_STREAMS.models,
  results: STREAMS.results,
  manifests: STREAMS.manifests,
  prepared: STREAMS.prepared,
};

/** Options of the JetStream topology graft creates. */
export interface TopologyOptions {
  /**
   * Size caps, bytes, by store (-1: none). Applied when a store is created, and to an existing one
   * when given here explicitly. Writes past a cap are refused: see the README's "Durability and limits".
   */
  maxBytes?: Partial<Record<StoreLimitName, number>>;
  /** Max queued extraction tasks; publishing past it fails (discard new), never evicts. Default 100000. */
  maxQueuedTasks?: number;
  /** Storage for streams and buckets. Default file. */
  memory?: boolean;
  /** Stream/bucket replicas (cluster only). Default 1. */
  replicas?: number;
  /**
   * Create what is missing (default true). False only opens: what a least-privilege
   * worker does, which may not create or change streams.
   */
  create?: boolean;
  /** Opening only: the streams to check exist (default every graft stream and bucket). A least-privilege role may look at no others. */
  uses?: readonly string[];
}

/** The streams a worker uses: all it may look at (its role cannot read what the job streams hold). */
export const WORKER_STREAMS: readonly string[] = [STREAMS.tasks, STREAMS.prepared, STREAMS.images, BUCKET_STREAMS.models, BUCKET_STREAMS.claims];

export function capOf(o: Required<TopologyOptions>, store: StoreLimitName): number {
  return o.maxBytes[store] ?? DEFAULT_STORE_LIMITS[store];
}

/** Applies the caps given explicitly to stores that exist already (created with other ones). */
export async function applyExplicitCaps(jsm: JetStreamManager, o: Required<TopologyOptions>): Promise<void> {
  for (const [store, bytes] of Object.entries(o.maxBytes) as [StoreLimitName, number][]) {
    const name = LIMITED_STREAMS[store];
    const info = await jsm.streams.info(name);
    if (info.config.max_bytes !== bytes) await jsm.streams.update(name, { max_bytes: bytes });
  }
}

export function streamConfigs(o: Required<TopologyOptions>): (Partial<StreamConfig> & { name: string })[] {
  const storage = o.memory ? StorageType.Memory : StorageType.File;
  const base = { storage, num_replicas: o.replicas };
  const deadLetters = {
    ...base,
    retention: RetentionPolicy.Limits,
    max_age: nanos(7 * 24 * 3600_000),
    max_msgs: 10_000,
    max_bytes: 256 * 1024 * 1024,
    discard: DiscardPolicy.Old,
    allow_rollup_hdrs: false,
  };
  return [
    // A job's first manifest is its manifest: later ones on the same subject are refused.
    {
      ...base,
      name: STREAMS.manifests,
      subjects: [SUBJECTS.manifests],
      retention: RetentionPolicy.Limits,
      max_msgs_per_subject: 1,
      discard: DiscardPolicy.New,
      discard_new_per_subject: true,
      max_bytes: capOf(o, 'manifests'),
    },
    // The pages of large manifests: each page once, like a manifest.
    {
      ...base,
      name: STREAMS.manifestPages,
      subjects: [SUBJECTS.manifestPages],
      retention: RetentionPolicy.Limits,
      max_msgs_per_subject: 1,
      discard: DiscardPolicy.New,
      discard_new_per_subject: true,
      max_bytes: capOf(o, 'manifests'),
    },
    {
      ...base,
      name: STREAMS.tasks,
      subjects: [SUBJECTS.tasks],
      retention: RetentionPolicy.Workqueue,
      // Back-pressure, not eviction: a full queue refuses new tasks.
      discard: DiscardPolicy.New,
      max_msgs: o.maxQueuedTasks,
      duplicate_window: nanos(10 * 60_000),
    },
    {
      ...base,
      name: STREAMS.results,
      subjects: [SUBJECTS.results],
      retention: RetentionPolicy.Workqueue,
      discard: DiscardPolicy.New,
      duplicate_window: nanos(10 * 60_000),
      max_bytes: capOf(o, 'results'),
    },
    {
      ...base,
      name: STREAMS.events,
      subjects: [SUBJECTS.events],
      retention: RetentionPolicy.Limits,
      max_age: nanos(7 * 24 * 3600_000),
      max_msgs_per_subject: 10_000,
    },
    // Bounded, one stream per kind: a flood of garbage costs at most this much, oldest of its kind dropped first.
    { ...deadLetters, name: STREAMS.deadLetters, subjects: [SUBJECTS.deadLetters] },
    { ...deadLetters, name: STREAMS.resultDeadLetters, subjects: [SUBJECTS.resultDeadLetters] },
    // Workers write these: a task is a few KB, so a worker's flood cannot fill the stream with big messages.
    { ...deadLetters, name: STREAMS.taskDeadLetters, subjects: [SUBJECTS.taskDeadLetters], max_bytes: 64 * 1024 * 1024, max_msg_size: 1024 * 1024 },
    // A cache: one copy per photo, size and rule; at its cap the oldest go (made again when needed).
    {
      ...base,
      name: STREAMS.prepared,
      subjects: [SUBJECTS.prepared],
      retention: RetentionPolicy.Limits,
      max_msgs_per_subject: 1,
      discard: DiscardPolicy.Old,
      max_bytes: capOf(o, 'prepared'),
      allow_direct: true,
      allow_rollup_hdrs: false,
      deny_purge: true,
    },
    // The claims bucket, in the KV layout, made as its bucket would be but hardened from the start:
    // workers write it, so it takes no rollup (a worker's header could purge it) and no purge API.
    // (Changing a stream just made can crash a restarted nats-server 2.9 in a cluster as it replays.)
    {
      ...base,
      name: BUCKET_STREAMS.claims,
      subjects: [`$KV.${BUCKETS.claims}.>`],
      description: 'graft task claims: which worker embeds a task',
      retention: RetentionPolicy.Limits,
      max_msgs_per_subject: 1,
      discard: DiscardPolicy.New,
      max_age: nanos(TASK_CLAIM_TTL_MS),
      allow_direct: true,
      deny_delete: true,
      deny_purge: true,
      allow_rollup_hdrs: false,
    },
    // Photos: each subject's first message is kept and later ones refused (a stored photo cannot be
    // replaced), no rollup (no writer can purge it with a header); the coordinator purges a corrupt one.
    {
      ...base,
      name: STREAMS.images,
      subjects: [SUBJECTS.images],
      retention: RetentionPolicy.Limits,
      max_msgs_per_subject: 1,
      discard: DiscardPolicy.New,
      discard_new_per_subject: true,
      max_bytes: capOf(o, 'images'),
      allow_direct: true,
      allow_rollup_hdrs: false,
      deny_delete: true,
    },
  ];
}
