import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AggregatorRegistry, Registry } from 'prom-client';
import { extractorMetrics } from '@graft/extractor';

/* Metrics of a GPU node's worker processes, each labelled with its gpu: one series per worker, never a sum of flags or times. */

describe('metrics of several worker processes under one supervisor', () => {
  it('keeps each GPU worker apart by its gpu label: counts per GPU, one timestamp and one info flag each', async () => {
    const children = await Promise.all(
      [1_700_000_000, 1_700_000_100].map(async (ts, i) => {
        const registry = new Registry();
        registry.setDefaultLabels({ gpu: String(i) }); // what reportToSupervisor does in each child
        const m = extractorMetrics(registry);
        m.images.inc(10 + i);
        m.lastProgress.set(ts);
        m.info.set({ backend: 'tfjs-node-gpu', backbone: 'x' }, 1);
        return registry.getMetricsAsJSON();
      }),
    );
    const text = await AggregatorRegistry.aggregate(children).metrics();
    assert.match(text, /^graft_images_extracted_total\{gpu="0"\} 10$/m, 'per-GPU throughput');
    assert.match(text, /^graft_images_extracted_total\{gpu="1"\} 11$/m);
    assert.match(text, /^graft_worker_last_progress_timestamp_seconds\{gpu="1"\} 1700000100$/m, 'each its own time, not a sum of two');
    assert.match(text, /^graft_worker_info\{backend="tfjs-node-gpu",backbone="x",gpu="0"\} 1$/m, 'one flag per worker, not 2');
  });
});
