import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AggregatorRegistry, Registry } from 'prom-client';
import { extractorMetrics } from '@graft/extractor';

/* Metrics summed over a GPU node's worker processes: counts add up, flags and timestamps do not. */

describe('metrics of several worker processes under one supervisor', () => {
  it('sums counters, takes the max of the last-progress timestamp and of the info flag', async () => {
    const children = await Promise.all(
      [1_700_000_000, 1_700_000_100].map(async (ts, i) => {
        const registry = new Registry();
        const m = extractorMetrics(registry);
        m.images.inc(10 + i);
        m.lastProgress.set(ts);
        m.info.set({ backend: 'tfjs-node-gpu', backbone: 'x' }, 1);
        return registry.getMetricsAsJSON();
      }),
    );
    const text = await AggregatorRegistry.aggregate(children).metrics();
    assert.match(text, /^graft_images_extracted_total 21$/m, 'counts add up');
    assert.match(text, /^graft_worker_last_progress_timestamp_seconds 1700000100$/m, 'the latest progress, not a sum of two times');
    assert.match(text, /^graft_worker_info\{backend="tfjs-node-gpu",backbone="x"\} 1$/m, 'one worker kind, not 2');
  });
});
