import { Counter, Gauge, type Registry } from 'prom-client';

/** Every metric the coordinator records, registered once on the given registry. */
export function coordinatorMetrics(registry: Registry) {
  const registers = [registry];
  return {
    manifests: new Counter({ name: 'graft_manifests_received_total', help: 'Manifests received, by outcome', labelNames: ['outcome'] as const, registers }),
    vectors: new Counter({ name: 'graft_vectors_received_total', help: 'Per-image results received from workers, by kind', labelNames: ['kind'] as const, registers }),
    cacheHits: new Counter({ name: 'graft_cache_hits_total', help: 'Images whose vector was already cached when their job started', registers }),
    cacheMisses: new Counter({ name: 'graft_cache_misses_total', help: 'Images that had to be extracted', registers }),
    tasksEnqueued: new Counter({ name: 'graft_tasks_enqueued_total', help: 'Extraction tasks published', registers }),
    malformed: new Counter({ name: 'graft_malformed_messages_total', help: 'Messages that were not the protobuf their subject carries', labelNames: ['stream'] as const, registers }),
    jobs: new Gauge({ name: 'graft_jobs', help: 'Jobs this coordinator knows, by state', labelNames: ['state'] as const, registers }),
    epoch: new Gauge({ name: 'graft_training_epoch', help: 'Epoch of the head being trained', registers }),
    loss: new Gauge({ name: 'graft_training_loss', help: 'Cross-entropy of the head, by split', labelNames: ['split'] as const, registers }),
    accuracy: new Gauge({ name: 'graft_training_accuracy_ratio', help: 'Accuracy of the head, by split', labelNames: ['split'] as const, registers }),
    testAccuracy: new Gauge({ name: 'graft_test_accuracy_ratio', help: 'Top-1 test accuracy of the last finished job', registers }),
    lastProgress: new Gauge({ name: 'graft_coordinator_last_progress_timestamp_seconds', help: 'When the coordinator last recorded progress', registers }),
  };
}

export type CoordinatorMetrics = ReturnType<typeof coordinatorMetrics>;
