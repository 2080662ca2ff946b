import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { followJob, generateSampleSet, publishDataset, sampleImage } from '@graft/cli';
import { JobState, freePort, openBus, type BusHandles as Bus, type JobStatus } from '@graft/protocol/testing';
import { startTestNats, type TestNats } from '../helpers/nats.js';
import { ROOT } from '../helpers/fixtures.js';
import { spawnGraft, waitFor, type Spawned } from '../helpers/process.js';

/** prom-client's own metrics that end in _total but are gauges (promtool flags them). */
const PROM_CLIENT_ALLOWED = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

const hasPrometheus = spawnSync('prometheus', ['--version']).status === 0 && spawnSync('promtool', ['--version']).status === 0;

async function metricsText(port: number): Promise<string> {
  return (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
}

describe(
  'observability - metrics, Prometheus and the dashboard',
  { skip: hasPrometheus ? false : 'needs prometheus and promtool (apt-get install prometheus)' },
  () => {
    let nats: TestNats;
    let work: string;
    let bus: Bus;
    let prometheus: ChildProcess;
    let promUrl: string;
    const procs: Spawned[] = [];
    const ports = { coordinator: 0, workers: [] as number[] };
    let job: JobStatus;
    const started = Math.floor(Date.now() / 1000);

    before(async () => {
      nats = await startTestNats();
      work = await mkdtemp(join(tmpdir(), 'graft-obs-'));
      const env = { GRAFT_HOME: work };
      ports.coordinator = await freePort();
      procs.push(spawnGraft(['coordinator', '--nats', nats.url, '--metrics-port', String(ports.coordinator)], env));
      for (let i = 0; i < 2; i++) {
        const p = await freePort();
        ports.workers.push(p);
        procs.push(spawnGraft(['worker', '--nats', nats.url, '--metrics-port', String(p)], env));
      }
      const promPort = await freePort();
      promUrl = `http://127.0.0.1:${promPort}`;
      const cfg = join(work, 'prometheus.yml');
      await writeFile(
        cfg,
        [
          'global: { scrape_interval: 1s, evaluation_interval: 1s }',
          'scrape_configs:',
          `  - job_name: graft-coordinator`,
          `    static_configs: [{ targets: ["127.0.0.1:${ports.coordinator}"] }]`,
          `  - job_name: graft-extractor`,
          `    static_configs: [{ targets: [${ports.workers.map((p) => `"127.0.0.1:${p}"`).join(', ')}] }]`,
        ].join('\n'),
      );
      prometheus = spawn('prometheus', [`--config.file=${cfg}`, `--storage.tsdb.path=${join(work, 'tsdb')}`, `--web.listen-address=127.0.0.1:${promPort}`], {
        stdio: 'ignore',
      });
      await waitFor(async () => (await fetch(`${promUrl}/-/ready`).catch(() => undefined))?.ok, 30_000, 'Prometheus to be ready');
      await waitFor(async () => (await fetch(`http://127.0.0.1:${ports.workers[1]}/readyz`).catch(() => undefined))?.ok, 60_000, 'workers to serve /readyz');
      bus = await openBus({ servers: nats.url });
    });

    after(async () => {
      await bus?.close();
      prometheus?.kill('SIGTERM');
      await Promise.all(procs.map((p) => p.stop()));
      await nats?.cleanup();
      await rm(work, { recursive: true, force: true });
    });

    it('a job runs with Prometheus scraping every process', async () => {
      const data = await generateSampleSet(join(work, 'shapes'), 6, 5, ['circle', 'square']);
      const bad = await sampleImage('circle', 1);
      await writeFile(join(data, 'circle', 'broken.jpg'), bad.subarray(0, 300));
      // Long enough (no early stop) for Prometheus to scrape the training gauges, which exist only while a head trains.
      const p = await publishDataset(bus, data, { progress: false, backbone: 'inception_v3_mixed5', training: { epochs: 500, patience: 0 } });
      job = await followJob(bus, p.jobId, { progress: false });
      assert.equal(job.state, JobState.JOB_STATE_DONE, job.error);
      assert.equal(job.counts!.failed, 1);
    });

    it('every /metrics passes promtool check metrics', async () => {
      for (const port of [ports.coordinator, ...ports.workers]) {
        const text = await metricsText(port);
        const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
        const problems = (r.stdout + r.stderr).split('\n').filter((l) => l.trim() && !PROM_CLIENT_ALLOWED.some((m) => l.startsWith(m)));
        assert.deepEqual(problems, [], `port ${port}`);
        assert.match(text, /^graft_/m);
      }
    });

    it("the broker's own numbers and the jobs gauge say what the job did, on a standby coordinator too", { timeout: 60_000 }, async () => {
      const text = await metricsText(ports.coordinator);
      const value = (re: RegExp) => Number(re.exec(text)?.[1] ?? NaN);
      assert.equal(value(/^graft_jobs\{state="done"\} (\d+)$/m), 1, 'the finished job is counted, not forgotten');
      assert.equal(value(/^graft_jobs\{state="extracting"\} (\d+)$/m), 0);
      assert.equal(value(/^graft_store_messages\{store="manifests"\} (\d+)$/m), 1, 'one manifest published');
      assert.ok(value(/^graft_store_bytes\{store="images"\} (\d+)$/m) > 0, 'the uploaded photos');
      assert.equal(value(/^graft_store_limit_bytes\{store="results"\} (-?\d+)$/m), 1024 ** 3, "the results stream's default cap");
      assert.equal(value(/^graft_store_limit_bytes\{store="images"\} (-?\d+)$/m), -1, 'no cap on the images store by default');
      assert.equal(value(/^graft_store_limit_bytes\{store="prepared"\} (-?\d+)$/m), 2 * 1024 ** 3, 'prepared inputs: a cache with a 2 GiB cap');
      assert.equal(value(/^graft_consumer_pending_messages\{store="tasks"\} (\d+)$/m), 0, 'nothing left in the task queue');
      assert.ok(value(/^graft_jetstream_storage_bytes (\d+)$/m) > 0);
      assert.doesNotMatch(text, /^graft_training_loss\{/m, 'no training gauges between jobs');
      // A standby coordinator reads the same job records: the numbers survive a takeover.
      const port = await freePort();
      const standby = spawnGraft(['coordinator', '--nats', nats.url, '--metrics-port', String(port)], { GRAFT_HOME: work });
      procs.push(standby);
      await waitFor(
        async () => /^graft_jobs\{state="done"\} 1$/m.test(await metricsText(port).catch(() => '')),
        30_000,
        `the standby's graft_jobs\n${standby.output().slice(-2000)}`,
      );
      assert.match(await metricsText(port), /^graft_coordinator_leader 0$/m, 'it stands by');
    });

    it('graft up serves metrics for itself, its coordinator and its workers', { timeout: 120_000 }, async () => {
      const [port, metrics] = [await freePort(), await freePort()];
      // graft up gives the coordinator metrics+1 and worker i metrics+1+i: keep that range free.
      const up = spawnGraft(['up', '--workers', '1', '--port', String(port), '--metrics-port', String(metrics), '--data', join(work, 'up')], {
        GRAFT_HOME: work,
      });
      try {
        for (const p of [metrics, metrics + 1, metrics + 2]) {
          await waitFor(async () => (await fetch(`http://127.0.0.1:${p}/readyz`).catch(() => undefined))?.ok, 60_000, `/readyz on ${p}`);
          const r = spawnSync('promtool', ['check', 'metrics'], { input: await metricsText(p), encoding: 'utf8' });
          const problems = (r.stdout + r.stderr).split('\n').filter((l) => l.trim() && !PROM_CLIENT_ALLOWED.some((m) => l.startsWith(m)));
          assert.deepEqual(problems, [], `port ${p}`);
        }
        assert.match(await metricsText(metrics), /^graft_cluster_processes\{role="worker"\} 1$/m);
      } finally {
        up.child.kill('SIGINT');
        assert.equal(await up.exited, 0, up.output().slice(-2000));
      }
    });

    it('every dashboard query parses and returns data, and the totals add up', async () => {
      const extracted = job.counts!.extracted!;
      // Let Prometheus take a few scrapes after the job.
      await waitFor(
        async () => {
          const r = (await (await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent('sum(graft_images_extracted_total)')}`)).json()) as {
            data: { result: { value: [number, string] }[] };
          };
          return Number(r.data.result[0]?.value[1]) === extracted;
        },
        30_000,
        `sum(graft_images_extracted_total) == ${extracted}`,
      );
      await new Promise((r) => setTimeout(r, 3000));
      const dash = JSON.parse(await readFile(join(ROOT, 'deploy/grafana/dashboards/graft.json'), 'utf8')) as {
        panels: { title: string; type: string; targets?: { expr: string; instant?: boolean }[] }[];
      };
      const empty: string[] = [];
      // As Grafana asks: a time series over the dashboard's range (here, since the test began), a stat or
      // table panel at one instant. Grafana's own variables get the values it would give them.
      const end = Date.now() / 1000;
      for (const panel of dash.panels) {
        for (const t of panel.targets ?? []) {
          const expr = t.expr
            .replace(/\$__rate_interval/g, '1m')
            .replace(/\$__range/g, `${Math.ceil(end - started)}s`)
            .replace(/\$instance/g, '.*');
          const instant = t.instant || panel.type !== 'timeseries';
          const res = await fetch(
            `${promUrl}/api/v1/${instant ? 'query' : 'query_range'}?query=${encodeURIComponent(expr)}${instant ? '' : `&start=${started}&end=${end}&step=1`}`,
          );
          const body = (await res.json()) as { status: string; error?: string; data?: { result: unknown[] } };
          assert.equal(body.status, 'success', `${panel.title}: ${t.expr}: ${body.error}`);
          if (!body.data?.result.length) empty.push(`${panel.title}: ${t.expr}`);
        }
      }
      assert.deepEqual(empty, [], 'queries with no data');
    });
  },
);
