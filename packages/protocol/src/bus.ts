import { connect, nanos, type NatsConnection } from '@nats-io/transport-node';
import {
  AckPolicy,
  DiscardPolicy,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  jetstream,
  jetstreamManager,
  type JetStreamClient,
  type JetStreamManager,
  type StreamConfig,
} from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { Objm, setSha256Backend, type ObjectStore } from '@nats-io/obj';

// Object store digests: Node's native SHA-256, not the pure-JS default (it ran on every
// image fetch, on the thread the backbone needs).
setSha256Backend('native');
import { BUCKETS, BUCKET_STREAMS, CONSUMERS, DEFAULT_NATS_URL, STREAMS, SUBJECTS, SUBJECT_ROOT } from './names.js';
import { BusError } from './errors.js';
import { MANIFEST_ACK_WAIT_MS, MANIFEST_MAX_DELIVER, RESULTS_ACK_WAIT_MS, RESULTS_MAX_DELIVER, TASK_CLAIM_TTL_MS } from './policy/retry.js';
import { ensureConsumer } from './stores/consumers.js';

/*
 * The connection to NATS and the JetStream topology graft uses (streams, consumers, buckets):
 * created idempotently, or only opened by a least-privilege process. Reading and writing each
 * store is the job of its module in stores/.
 */

/** How to reach NATS. Secrets here are never logged: use {@link describeBus} for logs. */
export interface BusOptions {
  /** Server URL(s), comma separated. Default {@link DEFAULT_NATS_URL}. */
  servers?: string | string[];
  /** Connection name shown in the server's monitoring. */
  name?: string;
  user?: string;
  pass?: string;
  token?: string;
  /** Wait between reconnect attempts, ms. Default 1000. */
  reconnectWaitMs?: number;
  /** TLS: CA file and optional client certificate/key files. */
  tls?: { caFile?: string; certFile?: string; keyFile?: string };
  /**
   * Prefix of this client's reply subjects. Default `_INBOX_<user>` when a user is set (the
   * deployed permissions let each role subscribe only to its own), else `_INBOX`.
   */
  inboxPrefix?: string;
}

/** Stores whose size a deployment can cap (`graft init --max-bytes STORE=SIZE`). */
export const STORE_LIMIT_NAMES = ['images', 'vectors', 'artifacts', 'models', 'results', 'manifests', 'prepared'] as const;
export type StoreLimitName = (typeof STORE_LIMIT_NAMES)[number];

/**
 * Default caps, bytes (-1: none but the server's own). Results drain as the coordinator reads them:
 * 1 GiB of them means it has been away a long time, and workers then hold their answers and retry.
 * Prepared inputs are a cache that drops its oldest copies at its cap (2 GiB: about 14,000 photos at
 * 224 px); nats-server sets a cap's bytes aside when the stream is made, so the default stays small.
 */
export const DEFAULT_STORE_LIMITS: Readonly<Record<StoreLimitName, number>> = { images: -1, vectors: -1, artifacts: -1, models: -1, results: 1024 ** 3, manifests: -1, prepared: 2 * 1024 ** 3 };

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

/** A connected bus with every stream and bucket opened. */
export interface Bus {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  artifacts: ObjectStore;
  models: ObjectStore;
  vectors: KV;
  jobs: KV;
  leases: KV;
  claims: KV;
  /** Whether the connection is still open (it reconnects by itself until closed). */
  isConnected(): boolean;
  close(): Promise<void>;
}

/**
 * Server URLs without credentials, and the credentials a URL carried (`nats://user:pw@host`):
 * they log in as user and password and are never shown.
 */
export function serverCredentials(servers: string | string[] | undefined): { servers: string[]; user?: string; pass?: string } {
  const list = (typeof servers === 'string' ? servers.split(',').map((s) => s.trim()) : servers) ?? [DEFAULT_NATS_URL];
  let user: string | undefined;
  let pass: string | undefined;
  const clean = list.map((s) => {
    const m = /^([a-z]+:\/\/)([^@/]*)@(.*)$/i.exec(s);
    if (!m) return s;
    const [u, p] = m[2].split(':');
    user ??= decodeURIComponent(u ?? '');
    if (p !== undefined) pass ??= decodeURIComponent(p);
    return `${m[1]}${m[3]}`;
  });
  return { servers: clean, ...(user ? { user } : {}), ...(pass !== undefined ? { pass } : {}) };
}

/** Redacts credentials: what a log line may say about a bus config. */
export function describeBus(opts: BusOptions): Record<string, unknown> {
  const { servers, user } = serverCredentials(opts.servers);
  return {
    servers: servers.join(','),
    name: opts.name,
    auth: opts.token ? 'token' : (opts.user ?? user) ? `user ${opts.user ?? user}` : 'none',
    tls: opts.tls ? true : false,
  };
}

/** Connects and keeps reconnecting forever: a broker restart must not end a worker. */
async function connectNats(opts: BusOptions = {}): Promise<NatsConnection> {
  const fromUrl = serverCredentials(opts.servers);
  const servers = fromUrl.servers;
  const user = opts.user ?? fromUrl.user;
  try {
    return await connect({
      servers,
      name: opts.name,
      user,
      pass: opts.pass ?? fromUrl.pass,
      token: opts.token,
      maxReconnectAttempts: -1,
      reconnectTimeWait: opts.reconnectWaitMs ?? 1000,
      waitOnFirstConnect: false,
      tls: opts.tls ? { caFile: opts.tls.caFile, certFile: opts.tls.certFile, keyFile: opts.tls.keyFile } : undefined,
      inboxPrefix: opts.inboxPrefix ?? (user ? `_INBOX_${user}` : undefined),
    });
  } catch (err) {
    // The client's own message may quote the URL it was given: only the clean list is shown, and the
    // client's error is not kept as the cause (a logger would print it, credentials and all).
    const why = (err as Error).message.replace(/[a-z]+:\/\/[^@\s/]*@/gi, '');
    throw new BusError(`cannot connect to NATS at ${servers.join(',')}: ${why}`);
  }
}

function capOf(o: Required<TopologyOptions>, store: StoreLimitName): number {
  return o.maxBytes[store] ?? DEFAULT_STORE_LIMITS[store];
}

/** Applies the caps given explicitly to stores that exist already (created with other ones). */
async function applyExplicitCaps(jsm: JetStreamManager, o: Required<TopologyOptions>): Promise<void> {
  for (const [store, bytes] of Object.entries(o.maxBytes) as [StoreLimitName, number][]) {
    const name = LIMITED_STREAMS[store];
    const info = await jsm.streams.info(name);
    if (info.config.max_bytes !== bytes) await jsm.streams.update(name, { max_bytes: bytes });
  }
}

function streamConfigs(o: Required<TopologyOptions>): (Partial<StreamConfig> & { name: string })[] {
  const storage = o.memory ? StorageType.Memory : StorageType.File;
  const base = { storage, num_replicas: o.replicas };
  const deadLetters = { ...base, retention: RetentionPolicy.Limits, max_age: nanos(7 * 24 * 3600_000), max_msgs: 10_000, max_bytes: 256 * 1024 * 1024, discard: DiscardPolicy.Old, allow_rollup_hdrs: false };
  return [
    // A job's first manifest is its manifest: later ones on the same subject are refused.
    { ...base, name: STREAMS.manifests, subjects: [SUBJECTS.manifests], retention: RetentionPolicy.Limits, max_msgs_per_subject: 1, discard: DiscardPolicy.New, discard_new_per_subject: true, max_bytes: capOf(o, 'manifests') },
    // The pages of large manifests: each page once, like a manifest.
    { ...base, name: STREAMS.manifestPages, subjects: [SUBJECTS.manifestPages], retention: RetentionPolicy.Limits, max_msgs_per_subject: 1, discard: DiscardPolicy.New, discard_new_per_subject: true, max_bytes: capOf(o, 'manifests') },
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
    { ...base, name: STREAMS.results, subjects: [SUBJECTS.results], retention: RetentionPolicy.Workqueue, discard: DiscardPolicy.New, duplicate_window: nanos(10 * 60_000), max_bytes: capOf(o, 'results') },
    { ...base, name: STREAMS.events, subjects: [SUBJECTS.events], retention: RetentionPolicy.Limits, max_age: nanos(7 * 24 * 3600_000), max_msgs_per_subject: 10_000 },
    // Bounded, one stream per kind: a flood of garbage costs at most this much, oldest of its kind dropped first.
    { ...deadLetters, name: STREAMS.deadLetters, subjects: [SUBJECTS.deadLetters] },
    { ...deadLetters, name: STREAMS.resultDeadLetters, subjects: [SUBJECTS.resultDeadLetters] },
    // Workers write these: a task is a few KB, so a worker's flood cannot fill the stream with big messages.
    { ...deadLetters, name: STREAMS.taskDeadLetters, subjects: [SUBJECTS.taskDeadLetters], max_bytes: 64 * 1024 * 1024, max_msg_size: 1024 * 1024 },
    // A cache: one copy per photo, size and rule; at its cap the oldest go (made again when needed).
    { ...base, name: STREAMS.prepared, subjects: [SUBJECTS.prepared], retention: RetentionPolicy.Limits, max_msgs_per_subject: 1, discard: DiscardPolicy.Old, max_bytes: capOf(o, 'prepared'), allow_direct: true, allow_rollup_hdrs: false, deny_purge: true },
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
    { ...base, name: STREAMS.images, subjects: [SUBJECTS.images], retention: RetentionPolicy.Limits, max_msgs_per_subject: 1, discard: DiscardPolicy.New, discard_new_per_subject: true, max_bytes: capOf(o, 'images'), allow_direct: true, allow_rollup_hdrs: false, deny_delete: true },
  ];
}

/**
 * A subject no message is ever on, per stream a role reads by gets, and how it reads them (direct
 * gets, or the message get of a bucket without direct access): asking for it says whether the stream
 * is there without the stream info a role could list what the stream holds with.
 */
const PROBES: Readonly<Record<string, { subject: string; direct: boolean }>> = {
  [STREAMS.images]: { subject: `${SUBJECT_ROOT}.images.probe.r`, direct: true },
  [STREAMS.prepared]: { subject: `${SUBJECT_ROOT}.prepared.probe.1.probe`, direct: true },
  [BUCKET_STREAMS.claims]: { subject: `$KV.${BUCKETS.claims}.probe`, direct: false },
  [BUCKET_STREAMS.models]: { subject: `$O.${BUCKETS.models}.M.cHJvYmU=`, direct: true },
};

/** Whether a stream exists: by a get of its probe subject where it has one, else by its info. @throws when it does not. */
async function streamExists(jsm: JetStreamManager, name: string): Promise<void> {
  const probe = PROBES[name];
  if (!probe) {
    await jsm.streams.info(name);
    return;
  }
  // No message there is the answer of a stream that exists; no stream answers no one. A role that
  // may not get from it may still look at its info.
  const get = probe.direct ? jsm.direct.getMessage(name, { last_by_subj: probe.subject }) : jsm.streams.getMessage(name, { last_by_subj: probe.subject });
  await get.catch(async (err: unknown) => {
    await jsm.streams.info(name).catch(() => {
      throw err;
    });
  });
}

/** A dead-letter stream of every kind (before one per kind): it keeps the manifests' and gives the other kinds up to their own streams. */
async function splitDeadLetters(jsm: JetStreamManager): Promise<void> {
  const info = await jsm.streams.info(STREAMS.deadLetters).catch(() => undefined);
  if (info && !info.config.subjects.every((s) => s === SUBJECTS.deadLetters)) await jsm.streams.update(STREAMS.deadLetters, { ...info.config, subjects: [SUBJECTS.deadLetters] });
}

/** Creates a stream, or leaves an existing one as it is (idempotent, safe from many processes). */
async function ensureStream(jsm: JetStreamManager, cfg: Partial<StreamConfig> & { name: string }): Promise<void> {
  try {
    await jsm.streams.info(cfg.name);
    return;
  } catch (err) {
    if (!(err instanceof JetStreamApiError) || err.status !== 404) throw err;
  }
  try {
    await jsm.streams.add(cfg);
  } catch (err) {
    // Another process created it between our info and add.
    if (err instanceof JetStreamApiError && /already in use|already exists/i.test(err.message)) return;
    throw err;
  }
}

/**
 * Connects (see {@link connectNats}) and creates, idempotently, every stream, consumer and
 * bucket graft uses, then opens them.
 * @throws BusError when NATS cannot be reached or JetStream is not enabled.
 */
export async function openBus(opts: BusOptions = {}, topology: TopologyOptions = {}): Promise<Bus> {
  const nc = await connectNats(opts);
  try {
    return await openBusOn(nc, topology);
  } catch (err) {
    await nc.close().catch(() => undefined); // the setup error below is what matters
    throw err instanceof BusError ? err : new BusError(`cannot set up JetStream: ${(err as Error).message}`, { cause: err });
  }
}

/** {@link openBus} on a connection (closing the Bus closes it). */
async function openBusOn(nc: NatsConnection, topology: TopologyOptions = {}): Promise<Bus> {
  const o: Required<TopologyOptions> = { maxQueuedTasks: 100_000, memory: false, replicas: 1, create: true, uses: [...Object.values(STREAMS), ...Object.values(BUCKET_STREAMS)], ...topology, maxBytes: topology.maxBytes ?? {} };
  const jsm = await jetstreamManager(nc, { timeout: 10_000, checkAPI: o.create });
  const js = jetstream(nc, { timeout: 10_000 });
  const kvm = new Kvm(js);
  const objm = new Objm(js);
  if (!o.create) {
    // Open only: every stream and bucket must exist already (graft init or the coordinator made it;
    // the buckets come last, so a process opening while they are made waits for them too).
    for (const name of o.uses) await streamExists(jsm, name).catch((err: Error) => {
      throw new BusError(`stream ${name} does not exist or is not readable (${err.message}): run graft init or start the coordinator first`, { cause: err });
    });
    return makeBus(nc, js, jsm, await openBuckets(jsm, kvm, objm, undefined));
  }
  await splitDeadLetters(jsm);
  for (const cfg of streamConfigs(o)) await ensureStream(jsm, cfg);
  await ensureConsumer(jsm, STREAMS.manifests, { durable_name: CONSUMERS.manifests, ack_policy: AckPolicy.Explicit, ack_wait: nanos(MANIFEST_ACK_WAIT_MS), max_deliver: MANIFEST_MAX_DELIVER });
  await ensureConsumer(jsm, STREAMS.results, { durable_name: CONSUMERS.results, ack_policy: AckPolicy.Explicit, ack_wait: nanos(RESULTS_ACK_WAIT_MS), max_deliver: RESULTS_MAX_DELIVER, max_ack_pending: 1000 });
  const buckets = await openBuckets(jsm, kvm, objm, o);
  await applyExplicitCaps(jsm, o);
  return makeBus(nc, js, jsm, buckets);
}

type Buckets = Pick<Bus, 'artifacts' | 'models' | 'vectors' | 'jobs' | 'leases' | 'claims'>;

/** Opens every bucket; with a topology, creates those that are missing (with its storage, replicas and caps). */
async function openBuckets(jsm: JetStreamManager, kvm: Kvm, objm: Objm, o: Required<TopologyOptions> | undefined): Promise<Buckets> {
  const storage = o?.memory ? StorageType.Memory : StorageType.File;
  const base = { storage, replicas: o?.replicas ?? 1 };
  const obj = (name: string, store: StoreLimitName, description: string) => (o ? objm.create(name, { ...base, max_bytes: capOf(o, store), description }) : objm.open(name, false));
  const kv = (name: string, extra: Record<string, unknown>) => (o ? kvm.create(name, { ...base, history: 1, ...extra }) : kvm.open(name));
  const [artifacts, models, vectors, jobs, leases, claims] = await Promise.all([
    obj(BUCKETS.artifacts, 'artifacts', 'graft heads, reports and checkpoints'),
    obj(BUCKETS.models, 'models', 'graft backbones resolved by the coordinator, by fingerprint'),
    kv(BUCKETS.vectors, { max_bytes: o ? capOf(o, 'vectors') : -1, description: 'graft bottleneck cache' }),
    kv(BUCKETS.jobs, { description: 'graft job records' }),
    kv(BUCKETS.leases, { description: 'graft leases: which coordinator leads' }),
    kv(BUCKETS.claims, { ttl: TASK_CLAIM_TTL_MS, description: 'graft task claims: which worker embeds a task' }),
  ]);
  // A claims bucket made before it was hardened at creation is hardened once.
  if (o) await hardenStream(jsm, BUCKET_STREAMS.claims);
  return { artifacts, models, vectors, jobs, leases, claims };
}

/** Turns off rollups and purges on a bucket's stream that less trusted roles write (kept off once set). */
async function hardenStream(jsm: JetStreamManager, stream: string): Promise<void> {
  const info = await jsm.streams.info(stream);
  if (info.config.allow_rollup_hdrs || !info.config.deny_purge) await jsm.streams.update(stream, { ...info.config, allow_rollup_hdrs: false, deny_purge: true });
}

/** How long closing a bus waits for pending messages to flush, ms. */
const CLOSE_DRAIN_MS = 5000;

function makeBus(nc: NatsConnection, js: JetStreamClient, jsm: JetStreamManager, buckets: Buckets): Bus {
  return {
    nc, js, jsm, ...buckets,
    isConnected: () => !nc.isClosed(),
    async close() {
      if (nc.isClosed()) return;
      // Drain flushes what is pending; with the broker gone it would wait forever, so it gets a few seconds.
      let timer: NodeJS.Timeout | undefined;
      const drained = await Promise.race([
        nc.drain().then(() => true, () => false),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), CLOSE_DRAIN_MS))),
      ]);
      clearTimeout(timer);
      if (!drained && !nc.isClosed()) {
        await Promise.race([nc.close().catch(() => undefined), new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_DRAIN_MS)))]);
        clearTimeout(timer);
      }
    },
  };
}
