// The real deploy/compose.yaml, run in Docker on this machine: images built from the real
// Dockerfiles (on base images made from Debian packages: no registry is reachable here), the
// CPU profile with three extractors, jobs published from the host as the cli user (one with its own
// local model, uploaded), Prometheus
// inside compose scraping them, an extractor killed mid-job, and the vector cache surviving
// `down` and `up` on its volume. Skips, saying why, where Docker cannot run.
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { generateSampleSet, publishDataset } from '@graft/cli';
import { JobState, freePort, openBus, readJob, type BusHandles as Bus, type JobStatus } from '@graft/protocol/testing';
import { initBackend } from '@graft/vision';
import { countsOf } from '../helpers/cluster.js';
import { writeTinyModel } from '../helpers/models.js';
import { ROOT } from '../helpers/fixtures.js';
import { waitFor } from '../helpers/process.js';

const run = promisify(execFile);
const EXTRACTORS = 3;
const PASSWORDS = {
  GRAFT_COORDINATOR_PASSWORD: `coord-${randomBytes(12).toString('hex')}`,
  GRAFT_WORKER_PASSWORD: `worker-${randomBytes(12).toString('hex')}`,
  GRAFT_CLI_PASSWORD: `cli-${randomBytes(12).toString('hex')}`,
  GRAFT_MONITOR_PASSWORD: `monitor-${randomBytes(12).toString('hex')}`,
  GRAFANA_ADMIN_PASSWORD: `grafana-${randomBytes(12).toString('hex')}`,
};

/** Why this suite cannot run here, or false. */
function skipReason(): string | false {
  if (process.env.GRAFT_SKIP_COMPOSE) return 'GRAFT_SKIP_COMPOSE is set';
  if (spawnSync('docker', ['info'], { stdio: 'ignore' }).status !== 0) return 'no Docker daemon answers (start dockerd: .ci/run does where it can)';
  if (!composeCommand()) return 'neither `docker compose` nor `docker-compose` is installed';
  if (spawnSync('mmdebstrap', ['--version'], { stdio: 'ignore' }).status !== 0)
    return 'mmdebstrap is not installed (the base images are built from Debian packages)';
  return false;
}

/** `docker compose` (v2) where it exists, else Debian's `docker-compose` (v1.29). */
function composeCommand(): string[] | undefined {
  if (spawnSync('docker', ['compose', 'version'], { stdio: 'ignore' }).status === 0) return ['docker', 'compose'];
  if (spawnSync('docker-compose', ['version'], { stdio: 'ignore' }).status === 0) return ['docker-compose'];
  return undefined;
}

async function sh(cmd: string[], what: string, timeoutMs = 600_000): Promise<string> {
  try {
    const { stdout } = await run(cmd[0], cmd.slice(1), { cwd: ROOT, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch (err) {
    const e = err as Error & { stdout?: string; stderr?: string };
    throw new Error(`${what} failed: ${cmd.join(' ')}\n${e.stdout?.slice(-4000) ?? ''}\n${e.stderr?.slice(-4000) ?? ''}`, { cause: err });
  }
}

const skip = skipReason();

describe('compose - the shipped cluster in Docker', { skip }, () => {
  const project = `graftct${randomBytes(3).toString('hex')}`;
  let work = '';
  let envFile = '';
  let natsPort = 0;
  let promPort = 0;
  let amPort = 0;
  let bus: Bus | undefined;
  const compose = (...args: string[]) =>
    sh([...composeCommand()!, '-p', project, '-f', join(ROOT, 'deploy', 'compose.yaml'), '--env-file', envFile, ...args], `compose ${args[0]}`);
  const up = () =>
    compose('up', '-d', '--no-build', '--scale', `extractor-cpu=${EXTRACTORS}`, 'nats', 'init', 'coordinator', 'extractor-cpu', 'prometheus', 'alertmanager');
  const containers = async (service: string) => (await compose('ps', '-q', service)).split('\n').filter(Boolean);
  const logs = async () => (await compose('logs', '--no-color', '--tail', '60').catch((e: Error) => e.message)).slice(-12_000);

  /** The counter an extractor container reports, read inside it (its port is not published). */
  async function embeddedIn(container: string): Promise<number> {
    const text = await sh(
      ['docker', 'exec', container, 'node', '-e', "fetch('http://127.0.0.1:9464/metrics').then(r=>r.text()).then(t=>process.stdout.write(t))"],
      'reading metrics',
    );
    return Number(/^graft_images_extracted_total (\d+)/m.exec(text)?.[1] ?? NaN);
  }

  async function prometheus(path: string): Promise<any> {
    const r = await fetch(`http://127.0.0.1:${promPort}${path}`);
    return ((await r.json()) as { data: unknown }).data;
  }

  /** The alerts Alertmanager holds now, by name. */
  async function firing(): Promise<string[]> {
    const r = await fetch(`http://127.0.0.1:${amPort}/api/v2/alerts?active=true`).catch(() => undefined);
    if (!r?.ok) return [];
    return ((await r.json()) as { labels: { alertname: string }; status: { state: string } }[])
      .filter((a) => a.status.state === 'active')
      .map((a) => a.labels.alertname);
  }

  async function openCliBus(): Promise<Bus> {
    return waitFor(
      () => openBus({ servers: `nats://127.0.0.1:${natsPort}`, user: 'cli', pass: PASSWORDS.GRAFT_CLI_PASSWORD }, { create: false }).catch(() => undefined),
      120_000,
      'NATS in compose to accept the cli user',
    );
  }

  async function healthy(): Promise<void> {
    await waitFor(
      async () => {
        const ids = [...(await containers('coordinator')), ...(await containers('extractor-cpu'))];
        if (ids.length !== 1 + EXTRACTORS) return false;
        const states = (await sh(['docker', 'inspect', '--format', '{{.State.Health.Status}}', ...ids], 'inspect')).split('\n').filter(Boolean);
        return states.every((s) => s === 'healthy');
      },
      240_000,
      'the coordinator and extractors to be healthy',
    );
  }

  async function finished(jobId: string): Promise<JobStatus> {
    const s = await waitFor(
      async () => {
        const r = await readJob(bus!, jobId).catch(() => undefined);
        return r && (r.state === JobState.JOB_STATE_DONE || r.state === JobState.JOB_STATE_FAILED) ? r : undefined;
      },
      300_000,
      `job ${jobId} to end`,
    );
    assert.equal(s.state, JobState.JOB_STATE_DONE, `${s.error}\n${await logs()}`);
    return s;
  }

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'graft-compose-'));
    [natsPort, promPort, amPort] = [await freePort(), await freePort(), await freePort()];
    envFile = join(work, '.env');
    const env = {
      COMPOSE_PROFILES: 'cpu',
      ...PASSWORDS,
      GRAFT_BIND_ADDRESS: '127.0.0.1',
      GRAFT_NATS_PORT: String(natsPort),
      GRAFT_PROMETHEUS_PORT: String(promPort),
      GRAFT_ALERTMANAGER_PORT: String(amPort),
      ALERTMANAGER_IMAGE: 'graft-offline/alertmanager:debian',
      NATS_IMAGE: 'graft-offline/nats:debian',
      PROMETHEUS_IMAGE: 'graft-offline/prometheus:debian',
    };
    await writeFile(
      envFile,
      Object.entries(env)
        .map(([k, v]) => `${k}=${v}`)
        .join('\n') + '\n',
    );
    await sh(['bash', join(ROOT, 'deploy', 'docker', 'offline-bases.sh')], 'building the base images', 900_000);
    // The real Dockerfile, without the native backend (its install downloads libtensorflow).
    await sh(
      [
        'docker',
        'build',
        '--network',
        'host',
        '--build-arg',
        'NODE_IMAGE=graft-offline/node:22',
        '--build-arg',
        'NODE_RUNTIME_IMAGE=graft-offline/node:22',
        '--build-arg',
        'NATIVE_BACKEND=none',
        '-f',
        'deploy/docker/Dockerfile.cpu',
        '-t',
        'graft-cpu:latest',
        '.',
      ],
      'building graft-cpu',
      900_000,
    );
  });

  after(async () => {
    await bus?.close();
    if (envFile) await compose('down', '-v', '--remove-orphans').catch(() => undefined);
    await rm(work, { recursive: true, force: true });
  });

  it(`runs with ${EXTRACTORS} extractors, survives losing one, and keeps its cache across down and up`, { timeout: 1_800_000 }, async () => {
    // The example env has no passwords: compose must refuse to start rather than run with none.
    const refused = await sh(
      [...composeCommand()!, '-p', project, '-f', join(ROOT, 'deploy', 'compose.yaml'), '--env-file', join(ROOT, 'deploy', 'env.example'), 'config'],
      'config',
    ).then(
      () => '',
      (e: Error) => e.message,
    );
    assert.match(refused, /GRAFT_\w+_PASSWORD|set it in \.env/, 'compose refuses the example env without passwords');

    await up();
    bus = await openCliBus();
    await healthy();

    // 1. A job through all three extractors; Prometheus in compose sees each of them.
    const first = await generateSampleSet(join(work, 'first'), 15, 31);
    const p1 = await publishDataset(bus, first, { progress: false, backbone: 'mobilenet_v2_035', training: { epochs: 5 } });
    const s1 = await finished(p1.jobId);
    const total1 = s1.counts?.total ?? 0;
    assert.deepEqual(countsOf(s1), { total: total1, cached: 0, extracted: total1, failed: 0 });
    const targets = await waitFor(
      async () => {
        const t = (await prometheus('/api/v1/targets?state=active')) as { activeTargets: { labels: { job: string }; health: string }[] };
        const up = t.activeTargets.filter((x) => x.labels.job === 'graft-extractor' && x.health === 'up');
        return up.length === EXTRACTORS ? up : undefined;
      },
      120_000,
      `Prometheus to scrape ${EXTRACTORS} extractors`,
    );
    assert.equal(targets.length, EXTRACTORS);
    const sum = await waitFor(
      async () => {
        const r = (await prometheus(`/api/v1/query?query=${encodeURIComponent('sum(graft_images_extracted_total)')}`)) as {
          result: { value: [number, string] }[];
        };
        const v = Number(r.result[0]?.value[1]);
        return v === total1 ? v : undefined;
      },
      60_000,
      `sum(graft_images_extracted_total) in Prometheus to reach ${total1}`,
    );
    assert.equal(sum, total1);

    // 2. One extractor killed mid-job: every image still gets exactly one vector.
    const second = await generateSampleSet(join(work, 'second'), 100, 32);
    const p2 = await publishDataset(bus, second, { progress: false, backbone: 'mobilenet_v2_035', training: { epochs: 5 } });
    await waitFor(async () => ((await readJob(bus!, p2.jobId))?.counts?.extracted ?? 0) >= 10, 180_000, 'the second job to be under way');
    const [victim] = await containers('extractor-cpu');
    await sh(['docker', 'kill', victim], 'killing an extractor');
    const atKill = (await readJob(bus, p2.jobId))!;
    const s2 = await finished(p2.jobId);
    const total2 = s2.counts?.total ?? 0;
    assert.ok((atKill.counts?.extracted ?? 0) < total2, 'the extractor was killed mid-job');
    assert.deepEqual(countsOf(s2), { total: total2, cached: 0, extracted: total2, failed: 0 });

    // 3. down and up: the vector cache lives on the NATS volume, so republishing costs no backbone call.
    await bus.close();
    bus = undefined;
    await compose('down');
    await up();
    bus = await openCliBus();
    await healthy();
    const p3 = await publishDataset(bus, first, { progress: false, backbone: 'mobilenet_v2_035', training: { epochs: 5 } });
    const s3 = await finished(p3.jobId);
    assert.deepEqual(countsOf(s3), { total: total1, cached: total1, extracted: 0, failed: 0 });
    const embedded = await Promise.all((await containers('extractor-cpu')).map(embeddedIn));
    assert.deepEqual(embedded, Array(EXTRACTORS).fill(0), 'no extractor ran the backbone');

    // 4. Your own model: a TF.js folder on this host, which no container can see. The cli user's
    // publish uploads it; the coordinator (no --allow-model-files) reads the upload; workers run it.
    await initBackend();
    const mine = join(work, 'my-model');
    await mkdir(mine);
    await writeTinyModel(mine);
    const p4 = await publishDataset(bus, first, { progress: false, backbone: mine, training: { epochs: 3 } });
    const s4 = await finished(p4.jobId);
    assert.deepEqual(countsOf(s4), { total: total1, cached: 0, extracted: total1, failed: 0 });
    assert.equal(s4.backbone?.dim, 3, 'the tiny model ran, not a catalogue one');

    // 5. Every extractor gone while a job has tasks pending: Alertmanager gets the alert; when
    // extractors come back, the job finishes with nothing lost.
    await compose('stop', 'extractor-cpu');
    const third = await generateSampleSet(join(work, 'third'), 20, 33);
    const p5 = await publishDataset(bus, third, { progress: false, backbone: 'mobilenet_v2_035', training: { epochs: 3 } });
    const alerts = await waitFor(
      async () => {
        const a = await firing();
        return a.includes('GraftNoExtractorWhileTasksPending') ? a : undefined;
      },
      420_000,
      `GraftNoExtractorWhileTasksPending firing in Alertmanager\n${await logs()}`,
    );
    assert.ok(alerts.includes('GraftNoExtractorWhileTasksPending'));
    await up();
    const s5 = await finished(p5.jobId);
    const total5 = s5.counts?.total ?? 0;
    assert.deepEqual(countsOf(s5), { total: total5, cached: 0, extracted: total5, failed: 0 });

    // The jobs gauge reads true: five jobs done, from the job records (a finished job is not forgotten).
    const done = await waitFor(
      async () => {
        const r = (await prometheus(`/api/v1/query?query=${encodeURIComponent('max(graft_jobs{state="done"})')}`)) as { result: { value: [number, string] }[] };
        return Number(r.result[0]?.value[1]) === 5 ? 5 : undefined;
      },
      120_000,
      'graft_jobs{state="done"} to read 5 in Prometheus',
    );
    assert.equal(done, 5);
  });
});
