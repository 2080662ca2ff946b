import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { errorCodeName, type ImageVector } from '@graft/protocol';
import { isAugmentedId } from '@graft/vision';
import type { TaskTimings } from './answers.js';
import type { PixelTiming } from './pixels.js';

/** Every metric an extractor records, registered once on the given registry. */
export function extractorMetrics(registry: Registry) {
  const registers = [registry];
  return {
    images: new Counter({ name: 'graft_images_extracted_total', help: 'Images turned into bottleneck vectors by this worker', registers }),
    augmented: new Counter({
      name: 'graft_augmented_images_extracted_total',
      help: 'Augmented copies of training images turned into vectors by this worker (not in graft_images_extracted_total)',
      registers,
    }),
    failed: new Counter({
      name: 'graft_images_failed_total',
      help: 'Images this worker could not turn into vectors, by reason',
      labelNames: ['reason'] as const,
      registers,
    }),
    tasks: new Counter({ name: 'graft_tasks_processed_total', help: 'Extraction tasks finished, by outcome', labelNames: ['outcome'] as const, registers }),
    bytesFetched: new Counter({
      name: 'graft_image_fetched_bytes_total',
      help: 'Bytes this worker read for images: originals from the image store and prepared inputs',
      registers,
    }),
    prepared: new Counter({
      name: 'graft_prepared_inputs_total',
      help: 'Photos at the input size: reused (no original fetched or decoded), made (stored for later tasks), failed (could not be stored), refused (a damaged copy, made again)',
      labelNames: ['outcome'] as const,
      registers,
    }),
    backboneCalls: new Counter({ name: 'graft_backbone_calls_total', help: 'Backbone forward passes run by this worker', registers }),
    stage: new Histogram({
      name: 'graft_batch_stage_seconds',
      help: 'Time a worker spends on one task, by stage (fetch, decode, infer, publish)',
      labelNames: ['stage'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    }),
    taskImages: new Histogram({ name: 'graft_task_images', help: 'Images per extraction task', buckets: [1, 2, 4, 8, 16, 32, 64, 128], registers }),
    inFlight: new Gauge({ name: 'graft_worker_tasks_in_flight', help: 'Tasks this worker holds (processing or prefetched)', registers }),
    // Each GPU worker's series carry its gpu label; 'max' keeps a flag and a timestamp whole wherever series are merged.
    info: new Gauge({
      name: 'graft_worker_info',
      help: 'Where this worker runs each loaded backbone (value 1): backend onnxruntime (provider cpu or cuda) or a TF.js backend',
      labelNames: ['backend', 'provider', 'backbone'] as const,
      registers,
      aggregator: 'max',
    }),
    // No sample until the first task: 0 would read as "stalled since 1970".
    lastProgress: unset(
      new Gauge({
        name: 'graft_worker_last_progress_timestamp_seconds',
        help: 'When this worker last finished a task (absent until its first)',
        registers,
        aggregator: 'max',
      }),
    ),
  };
}

export type ExtractorMetrics = ReturnType<typeof extractorMetrics>;

/** Counts what reading a task's images took: bytes, and prepared inputs reused or refused. */
export function countFetched(m: ExtractorMetrics, t: PixelTiming): void {
  m.bytesFetched.inc(t.fetchedBytes);
  m.prepared.inc({ outcome: 'reused' }, t.preparedReused);
  m.prepared.inc({ outcome: 'refused' }, t.preparedRefused);
}

/** A worker's totals (Worker.stats). */
export interface WorkerTotals {
  tasks: number;
  images: number;
  failed: number;
  backboneCalls: number;
}

/** Embedded images counted once, whatever happens to the answer; augmented copies apart from photos. */
export function countEmbedded(m: ExtractorMetrics, totals: WorkerTotals, out: ImageVector[]): void {
  const failed = out.filter((v) => v.errorCode).length;
  const copies = out.filter((v) => !v.errorCode && isAugmentedId(v.sha256 ?? '')).length;
  m.images.inc(out.length - failed - copies);
  m.augmented.inc(copies);
  totals.images += out.length - failed;
}

/** A task answered and acked: its failures by reason, its size, and each stage's time. */
export function countDone(m: ExtractorMetrics, totals: WorkerTotals, out: ImageVector[], t: TaskTimings): void {
  const failed = out.filter((v) => v.errorCode);
  totals.tasks++;
  totals.failed += failed.length;
  for (const v of failed) m.failed.inc({ reason: errorCodeName(v.errorCode) });
  m.tasks.inc({ outcome: 'ok' });
  m.taskImages.observe(out.length);
  m.stage.observe({ stage: 'fetch' }, t.fetchSeconds);
  m.stage.observe({ stage: 'decode' }, t.decodeSeconds);
  m.stage.observe({ stage: 'infer' }, t.inferSeconds);
  m.stage.observe({ stage: 'publish' }, t.publishSeconds);
  m.lastProgress.setToCurrentTime();
}

/** A gauge with no sample until it is first set (prom-client starts a label-less gauge at 0). */
function unset(g: Gauge): Gauge {
  g.remove();
  return g;
}
