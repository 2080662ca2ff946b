import { nanos } from '@nats-io/transport-node';
import { AckPolicy, JetStreamApiError, StorageType, type JetStreamManager, type StreamConfig } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { Objm, type ObjectStore } from '@nats-io/obj';
import { BUCKETS, BUCKET_STREAMS, CONSUMERS, STREAMS, SUBJECTS, SUBJECT_ROOT } from './names.js';
import { BusError } from './errors.js';
import { MANIFEST_ACK_WAIT_MS, MANIFEST_MAX_DELIVER, RESULTS_ACK_WAIT_MS, RESULTS_MAX_DELIVER, TASK_CLAIM_TTL_MS } from './policy/retry.js';
import { ensureConsumer } from './stores/consumers.js';
import { applyExplicitCaps, capOf, streamConfigs, type StoreLimitName, type TopologyOptions } from './stream-configs.js';

/*
 * graft's JetStream topology (streams, consumers, buckets): created idempotently by whoever may
 * (graft init, the coordinator), or only checked and opened by a least-privilege role.
 */

/** The buckets a bus holds. */
export interface Buckets {
  artifacts: ObjectStore;
  models: ObjectStore;
  vectors: KV;
  jobs: KV;
  leases: KV;
  claims: KV;
}

/**
 * Creates what is missing of the topology (or, for a role that may not, checks it is there) and
 * opens its buckets.
 * @throws BusError naming a stream a least-privilege role finds missing.
 */
export async function setUpTopology(jsm: JetStreamManager, kvm: Kvm, objm: Objm, topology: TopologyOptions = {}): Promise<Buckets> {
  const o: Required<TopologyOptions> = {
    maxQueuedTasks: 100_000,
    memory: false,
    replicas: 1,
    create: true,
    uses: [...Object.values(STREAMS), ...Object.values(BUCKET_STREAMS)],
    ...topology,
    maxBytes: topology.maxBytes ?? {},
  };
  if (!o.create) {
    // Open only: every stream and bucket must exist already (graft init or the coordinator made it;
    // the buckets come last, so a process opening while they are made waits for them too).
    for (const name of o.uses)
      await streamExists(jsm, name).catch((err: Error) => {
        throw new BusError(`stream ${name} does not exist or is not readable (${err.message}): run graft init or start the coordinator first`, { cause: err });
      });
    return openBuckets(jsm, kvm, objm, undefined);
  }
  await splitDeadLetters(jsm);
  for (const cfg of streamConfigs(o)) await ensureStream(jsm, cfg);
  await ensureConsumer(jsm, STREAMS.manifests, {
    durable_name: CONSUMERS.manifests,
    ack_policy: AckPolicy.Explicit,
    ack_wait: nanos(MANIFEST_ACK_WAIT_MS),
    max_deliver: MANIFEST_MAX_DELIVER,
  });
  await ensureConsumer(jsm, STREAMS.results, {
    durable_name: CONSUMERS.results,
    ack_policy: AckPolicy.Explicit,
    ack_wait: nanos(RESULTS_ACK_WAIT_MS),
    max_deliver: RESULTS_MAX_DELIVER,
    max_ack_pending: 1000,
  });
  const buckets = await openBuckets(jsm, kvm, objm, o);
  await applyExplicitCaps(jsm, o);
  return buckets;
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
  if (info && !info.config.subjects.every((s) => s === SUBJECTS.deadLetters))
    await jsm.streams.update(STREAMS.deadLetters, { ...info.config, subjects: [SUBJECTS.deadLetters] });
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

/** Opens every bucket; with a topology, creates those that are missing (with its storage, replicas and caps). */
async function openBuckets(jsm: JetStreamManager, kvm: Kvm, objm: Objm, o: Required<TopologyOptions> | undefined): Promise<Buckets> {
  const storage = o?.memory ? StorageType.Memory : StorageType.File;
  const base = { storage, replicas: o?.replicas ?? 1 };
  const obj = (name: string, store: StoreLimitName, description: string) =>
    o ? objm.create(name, { ...base, max_bytes: capOf(o, store), description }) : objm.open(name, false);
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
  if (info.config.allow_rollup_hdrs || !info.config.deny_purge)
    await jsm.streams.update(stream, { ...info.config, allow_rollup_hdrs: false, deny_purge: true });
}
