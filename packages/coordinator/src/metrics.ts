import { Counter, Gauge, type Registry } from 'prom-client';
import { STREAMS } from '@graft/protocol';

/** Reads the task queue's depth at scrape time (JetStream consumer info), summed over backbones. */
export type QueueProbe = () => Promise<{ pending: number; unacked: number }>;

/** Every metric the coordinator records, registered once on the given registry. */
export function coordinatorMetrics(registry: Registry, queue?: QueueProbe) {
  const registers = [registry];
  let last: Promise<{ pending: number; unacked: number }> | undefined;
  // One consumer-info sweep serves both gauges of a scrape.
  const probe = () => {
    last ??= (queue ? queue() : Promise.resolve({ pending: 0, unacked: 0 })).finally(() => setTimeout(() => (last = undefined), 100));
    return last;
  };
  return {
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
    manifests: zeroed(new Counter({ name: 'graft_manifests_received_total', help: 'Manifests received, by outcome', labelNames: ['outcome'] as const, registers }), 'outcome', ['accepted', 'refused', 'malformed']),
    vectors: zeroed(new Counter({ name: 'graft_vectors_received_total', help: 'Per-image results received from workers, by kind', labelNames: ['kind'] as const, registers }), 'kind', ['vector', 'error', 'refused', 'dead_letter']),
    cacheHits: new Counter({ name: 'graft_cache_hits_total', help: 'Images whose vector was already cached when their job started', registers }),
    cacheMisses: new Counter({ name: 'graft_cache_misses_total', help: 'Images that had to be extracted', registers }),
    tasksEnqueued: new Counter({ name: 'graft_tasks_enqueued_total', help: 'Extraction tasks published', registers }),
    malformed: zeroed(new Counter({ name: 'graft_malformed_messages_total', help: 'Messages that were not the protobuf their subject carries', labelNames: ['stream'] as const, registers }), 'stream', [STREAMS.manifests, STREAMS.results]),
    jobs: new Gauge({ name: 'graft_jobs', help: 'Jobs this coordinator knows, by state', labelNames: ['state'] as const, registers }),
    jobsFinished: zeroed(new Counter({ name: 'graft_jobs_finished_total', help: 'Jobs this coordinator ended, by outcome (done, or failed: refused, or failed in training)', labelNames: ['outcome'] as const, registers }), 'outcome', ['done', 'failed']),
    epoch: new Gauge({ name: 'graft_training_epoch', help: 'Epoch of the head being trained', registers }),
    loss: new Gauge({ name: 'graft_training_loss', help: 'Cross-entropy of the head, by split', labelNames: ['split'] as const, registers }),
    accuracy: new Gauge({ name: 'graft_training_accuracy_ratio', help: 'Accuracy of the head, by split', labelNames: ['split'] as const, registers }),
    testAccuracy: new Gauge({ name: 'graft_test_accuracy_ratio', help: 'Top-1 test accuracy of the last finished job', registers }),
    sweepHeads: new Counter({ name: 'graft_sweep_heads_trained_total', help: 'Heads trained by sweeps (heads restored after a takeover are not counted again)', registers }),
    sweepBestAccuracy: new Gauge({ name: 'graft_sweep_best_validation_accuracy_ratio', help: 'Best validation accuracy among the heads of the sweep being trained', registers }),
    audits: zeroed(new Counter({ name: 'graft_audits_total', help: 'Audits of jobs ended, by outcome (done, or skipped: too few photos per class)', labelNames: ['outcome'] as const, registers }), 'outcome', ['done', 'skipped']),
    auditFolds: new Counter({ name: 'graft_audit_folds_trained_total', help: 'Out-of-sample heads trained by audits (folds restored after a takeover are not counted again)', registers }),
    auditFindings: zeroed(new Counter({ name: 'graft_audit_findings_total', help: 'What audits found, by kind (label_issue, duplicate_group, leaked_pair, outlier)', labelNames: ['kind'] as const, registers }), 'kind', ['label_issue', 'duplicate_group', 'leaked_pair', 'outlier']),
    lastProgress: new Gauge({ name: 'graft_coordinator_last_progress_timestamp_seconds', help: 'When the coordinator last recorded progress', registers }),
  };
}

export type CoordinatorMetrics = ReturnType<typeof coordinatorMetrics>;

/** A labelled counter with a series at 0 for each known label: an alert sees its first increase. */
function zeroed<L extends string>(c: Counter<L>, label: L, values: readonly string[]): Counter<L> {
  for (const v of values) c.inc({ [label]: v } as Record<L, string>, 0);
  return c;
}
