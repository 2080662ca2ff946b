import { Counter, Gauge, type Registry } from 'prom-client';
import { STREAMS, type BrokerStats } from '@graft/protocol';

/** Reads the task queue's depth at scrape time (JetStream consumer info), summed over backbones. */
export type QueueProbe = () => Promise<{ pending: number; unacked: number }>;
/** Reads the broker's numbers for graft's stores at scrape time. */
export type BrokerProbe = () => Promise<BrokerStats>;

/** One read shared by every gauge of a scrape (the gauges collect at once; the next scrape reads again). */
function shared<T>(read: () => Promise<T>): () => Promise<T> {
  let last: Promise<T> | undefined;
  return () => (last ??= read().finally(() => setTimeout(() => (last = undefined), 100)));
}

/** What the gauges read at scrape time. */
export interface MetricProbes {
  queue?: QueueProbe;
  broker?: BrokerProbe;
  /** Jobs in the cluster by state name. */
  jobCounts?: () => ReadonlyMap<string, number>;
  /** Images (and augmented copies) still to extract, by running job: only the leader runs jobs. */
  remaining?: () => Iterable<[jobId: string, images: number]>;
}

/** Every metric the coordinator records, registered once on the given registry. */
export function coordinatorMetrics(registry: Registry, probes: MetricProbes = {}) {
  const registers = [registry];
  const probe = shared(probes.queue ?? (() => Promise.resolve({ pending: 0, unacked: 0 })));
  const { jobCounts, remaining } = probes;
  return {
    ...brokerMetrics(registers, probes.broker),
    remaining: new Gauge({
      name: 'graft_job_images_remaining',
      help: 'Images (and augmented copies) a running job still waits for, by job: only running jobs have a series (the dashboard divides it by throughput for an ETA)',
      labelNames: ['job'] as const,
      registers,
      collect() {
        this.reset();
        for (const [job, n] of remaining?.() ?? []) this.set({ job }, n);
      },
    }),
    tasksPending: new Gauge({
      name: 'graft_tasks_pending',
      help: 'Extraction tasks queued and not yet delivered to a worker (read from JetStream at scrape time)',
      registers,
      async collect() {
        this.set((await probe().catch(() => ({ pending: NaN }))).pending);
      },
    }),
    tasksUnacked: new Gauge({
      name: 'graft_tasks_unacked',
      help: 'Extraction tasks delivered to workers and not yet acknowledged (read from JetStream at scrape time)',
      registers,
      async collect() {
        this.set((await probe().catch(() => ({ unacked: NaN }))).unacked);
      },
    }),
    leader: new Gauge({ name: 'graft_coordinator_leader', help: 'Whether this coordinator holds the lease and leads (1) or stands by (0)', registers }),
    info: new Gauge({ name: 'graft_coordinator_info', help: 'Backend of the coordinator (value 1)', labelNames: ['backend'] as const, registers }),
    vectorsCached: new Counter({ name: 'graft_vectors_cached_total', help: 'Vectors (and content errors) written to the vector cache', registers }),
    manifests: zeroed(
      new Counter({ name: 'graft_manifests_received_total', help: 'Manifests received, by outcome', labelNames: ['outcome'] as const, registers }),
      'outcome',
      ['accepted', 'refused', 'malformed'],
    ),
    vectors: zeroed(
      new Counter({ name: 'graft_vectors_received_total', help: 'Per-image results received from workers, by kind', labelNames: ['kind'] as const, registers }),
      'kind',
      ['vector', 'error', 'refused', 'dead_letter'],
    ),
    cacheHits: new Counter({ name: 'graft_cache_hits_total', help: 'Images whose vector was already cached when their job started', registers }),
    cacheMisses: new Counter({ name: 'graft_cache_misses_total', help: 'Images that had to be extracted', registers }),
    tasksEnqueued: new Counter({ name: 'graft_tasks_enqueued_total', help: 'Extraction tasks published', registers }),
    imagesLost: new Counter({
      name: 'graft_images_lost_total',
      help: 'Pending images found on no queue and in no answer (a task taken and never answered) and enqueued again',
      registers,
    }),
    malformed: zeroed(
      new Counter({
        name: 'graft_malformed_messages_total',
        help: 'Messages that were not the protobuf their subject carries',
        labelNames: ['stream'] as const,
        registers,
      }),
      'stream',
      [STREAMS.manifests, STREAMS.results],
    ),
    jobs: new Gauge({
      name: 'graft_jobs',
      help: 'Jobs in the cluster by state, from the job records (every coordinator reports the same numbers)',
      labelNames: ['state'] as const,
      registers,
      collect() {
        for (const [state, n] of jobCounts?.() ?? []) this.set({ state }, n);
      },
    }),
    jobsFinished: zeroed(
      new Counter({
        name: 'graft_jobs_finished_total',
        help: 'Jobs this coordinator ended, by outcome (done, or failed: refused, or failed in training)',
        labelNames: ['outcome'] as const,
        registers,
      }),
      'outcome',
      ['done', 'failed'],
    ),
    epoch: new Gauge({ name: 'graft_training_epoch', help: 'Epoch of the head being trained', registers }),
    loss: new Gauge({ name: 'graft_training_loss', help: 'Cross-entropy of the head, by split', labelNames: ['split'] as const, registers }),
    accuracy: new Gauge({ name: 'graft_training_accuracy_ratio', help: 'Accuracy of the head, by split', labelNames: ['split'] as const, registers }),
    testAccuracy: new Gauge({ name: 'graft_test_accuracy_ratio', help: 'Top-1 test accuracy of the last finished job', registers }),
    sweepHeads: new Counter({
      name: 'graft_sweep_heads_trained_total',
      help: 'Heads trained by sweeps (heads restored after a takeover are not counted again)',
      registers,
    }),
    sweepBestAccuracy: new Gauge({
      name: 'graft_sweep_best_validation_accuracy_ratio',
      help: 'Best validation accuracy among the heads of the sweep being trained',
      registers,
    }),
    audits: zeroed(
      new Counter({
        name: 'graft_audits_total',
        help: 'Audits of jobs ended, by outcome (done, or skipped: too few photos per class)',
        labelNames: ['outcome'] as const,
        registers,
      }),
      'outcome',
      ['done', 'skipped'],
    ),
    auditFolds: new Counter({
      name: 'graft_audit_folds_trained_total',
      help: 'Out-of-sample heads trained by audits (folds restored after a takeover are not counted again)',
      registers,
    }),
    auditFindings: zeroed(
      new Counter({
        name: 'graft_audit_findings_total',
        help: 'What audits found, by kind (label_issue, duplicate_group, leaked_pair, outlier)',
        labelNames: ['kind'] as const,
        registers,
      }),
      'kind',
      ['label_issue', 'duplicate_group', 'leaked_pair', 'outlier'],
    ),
    predictions: zeroed(
      new Counter({
        name: 'graft_predictions_total',
        help: 'Photos answered by prediction jobs (graft predict), by outcome (answered, or failed: no vector); pages restored after a takeover are not counted again',
        labelNames: ['outcome'] as const,
        registers,
      }),
      'outcome',
      ['answered', 'failed'],
    ),
    lastProgress: unset(
      new Gauge({
        name: 'graft_coordinator_last_progress_timestamp_seconds',
        help: 'When the coordinator last recorded progress (absent until it first does)',
        registers,
      }),
    ),
  };
}

export type CoordinatorMetrics = ReturnType<typeof coordinatorMetrics>;

/**
 * The broker's numbers, read from JetStream at scrape time: size and cap of every graft store, each
 * consumed stream's backlog, the account's storage. A read that fails leaves the gauges empty (no stale values).
 */
function brokerMetrics(registers: Registry[], broker?: BrokerProbe) {
  if (!broker) return {};
  const stats = shared(broker);
  const gauge = (name: string, help: string, labelNames: readonly string[], fill: (g: Gauge<string>, s: BrokerStats) => void) =>
    new Gauge({
      name,
      help,
      labelNames,
      registers,
      async collect() {
        this.reset();
        const s = await stats().catch(() => undefined);
        if (s) fill(this, s);
      },
    });
  return {
    storeBytes: gauge('graft_store_bytes', 'Bytes held by each graft stream or store (JetStream stream info)', ['store'], (g, s) =>
      s.stores.forEach((x) => g.set({ store: x.store }, x.bytes)),
    ),
    storeMessages: gauge('graft_store_messages', 'Messages held by each graft stream or store', ['store'], (g, s) =>
      s.stores.forEach((x) => g.set({ store: x.store }, x.messages)),
    ),
    storeLimit: gauge('graft_store_limit_bytes', "Byte cap of each graft stream or store (-1: none but the server's own)", ['store'], (g, s) =>
      s.stores.forEach((x) => g.set({ store: x.store }, x.maxBytes)),
    ),
    consumerPending: gauge('graft_consumer_pending_messages', 'Messages not yet delivered to the consumers of a stream, summed', ['store'], (g, s) =>
      s.consumers.forEach((x) => g.set({ store: x.store }, x.pending)),
    ),
    consumerAckPending: gauge(
      'graft_consumer_ack_pending_messages',
      "Messages delivered and not yet acknowledged, summed over a stream's consumers",
      ['store'],
      (g, s) => s.consumers.forEach((x) => g.set({ store: x.store }, x.ackPending)),
    ),
    consumerRedelivered: gauge(
      'graft_consumer_redelivered_messages',
      "Messages delivered more than once and not yet acknowledged, summed over a stream's consumers",
      ['store'],
      (g, s) => s.consumers.forEach((x) => g.set({ store: x.store }, x.redelivered)),
    ),
    storage: gauge('graft_jetstream_storage_bytes', "The account's JetStream storage in use (file and memory), bytes", [], (g, s) => g.set(s.storageBytes)),
  };
}

/** A gauge with no sample until it is first set (prom-client starts a label-less gauge at 0, "stalled since 1970"). */
function unset(g: Gauge): Gauge {
  g.remove();
  return g;
}

/** A labelled counter with a series at 0 for each known label: an alert sees its first increase. */
function zeroed<L extends string>(c: Counter<L>, label: L, values: readonly string[]): Counter<L> {
  for (const v of values) c.inc({ [label]: v } as Record<L, string>, 0);
  return c;
}
