// Helpers shared by graft's benchmarks: the data, a real local cluster, a timed job, metrics.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateSampleSet, publishDataset } from '@graft/cli';
import { freePort, isTerminal, openBus, readJob, startLocalNats } from '@graft/protocol';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const CLI = join(ROOT, 'packages/cli/bin/graft.js');
export const SHARED = resolve(ROOT, '..', 'shared');

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const now = () => performance.now() / 1000;

/** The photo set: clothing-small (with its splits) or a generated one. */
export async function dataset(work) {
  const dir = join(SHARED, 'datasets/clothing-small');
  if (existsSync(join(dir, 'splits.tsv'))) return { dir, splits: join(dir, 'splits.tsv'), name: 'clothing-small (3,781 photos, 10 classes)' };
  const gen = await generateSampleSet(join(work, 'generated'), 150, 1);
  return { dir: gen, splits: undefined, name: 'generated shapes (600 images, 4 classes; ../shared absent)' };
}

/** A subset folder of the first n images per class (symlinks), for throughput runs. */
export async function subset(src, perClass, work, tag) {
  const out = join(work, `subset-${tag}`);
  for (const cls of (await readdir(src, { withFileTypes: true }))
    .filter((d) => d.isDirectory())
    .map((d) => d.name)
    .sort()) {
    await mkdir(join(out, cls), { recursive: true });
    const files = (await readdir(join(src, cls))).sort().slice(0, perClass);
    for (const f of files) await writeFile(join(out, cls, f), await readFile(join(src, cls, f)));
  }
  return out;
}

export async function imagesOf(dir) {
  const out = [];
  for (const cls of (await readdir(dir, { withFileTypes: true }))
    .filter((d) => d.isDirectory())
    .map((d) => d.name)
    .sort()) {
    for (const f of (await readdir(join(dir, cls))).sort()) out.push(join(dir, cls, f));
  }
  return out;
}

export function graft(args, env = {}) {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, GRAFT_LOG_LEVEL: 'warn', ...env } });
  let err = '';
  child.stderr.on('data', (d) => (err = (err + d).slice(-4000)));
  return { child, err: () => err, stop: () => new Promise((r) => (child.exitCode !== null ? r() : (child.once('exit', r), child.kill('SIGTERM')))) };
}

export async function scrape(port) {
  // A kept-alive connection the worker just closed fails once: ask again.
  const get1 = () => fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text());
  const text = await get1().catch(() => sleep(200).then(get1));
  const get = (re) => [...text.matchAll(re)].reduce((a, m) => a + Number(m[1]), 0);
  const stage = (s) => get(new RegExp(`^graft_batch_stage_seconds_sum\\{stage="${s}"\\} ([0-9.e+-]+)`, 'gm'));
  return {
    calls: get(/^graft_backbone_calls_total ([0-9.e+-]+)/gm),
    images: get(/^graft_images_extracted_total ([0-9.e+-]+)/gm),
    bytesFetched: get(/^graft_image_fetched_bytes_total ([0-9.e+-]+)/gm),
    fetch: stage('fetch'),
    decode: stage('decode'),
    infer: stage('infer'),
    publish: stage('publish'),
    rss: get(/^process_resident_memory_bytes ([0-9.e+-]+)/gm),
    preparedReused: get(/^graft_prepared_inputs_total\{outcome="reused"\} ([0-9.e+-]+)/gm),
    preparedMade: get(/^graft_prepared_inputs_total\{outcome="made"\} ([0-9.e+-]+)/gm),
  };
}

/** A process's resident memory now and at its peak, bytes (Linux /proc; 'self' for this one). */
export async function procMemory(pid = 'self') {
  const s = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const kb = (k) => 1024 * Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(s)?.[1] ?? NaN);
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}

/** Waits for a graft process's /readyz on a port: to say ready, or (`anyAnswer`: a standby coordinator) to answer at all. */
export async function waitForReadyz(port, { anyAnswer = false, what = `the process on ${port}` } = {}) {
  for (let i = 0; i <= 600; i++) {
    const r = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined);
    if (r && (r.ok || anyAnswer)) return;
    await sleep(100);
  }
  throw new Error(`${what} never became ready`);
}

/** A fresh cluster (nats-server, coordinator, N workers with metrics), ready to extract. */
export async function cluster(work, workers, backboneSpec, workerArgs = [], coordinatorArgs = []) {
  const dataDir = await mkdtemp(join(work, 'nats-'));
  const nats = await startLocalNats({ dataDir });
  const procs = [graft(['coordinator', '--nats', nats.url, '--allow-model-files', ...coordinatorArgs])];
  const ports = [];
  for (let i = 0; i < workers; i++) {
    const port = await freePort();
    ports.push(port);
    procs.push(graft(['worker', '--nats', nats.url, '--metrics-port', String(port), ...workerArgs]));
  }
  for (const p of ports) await waitForReadyz(p, { what: `worker on ${p}: ${procs.map((x) => x.err()).join('\n')}` });
  const bus = await openBus({ servers: nats.url });
  return {
    bus,
    ports,
    nats,
    /** Process ids: coordinator, workers..., nats-server. */
    pids: [...procs.map((p) => p.child.pid), nats.process.pid],
    async warm(spec = backboneSpec) {
      // Load the backbone in every worker before timing: a tiny job over one image per worker.
      const warmDir = join(work, `warm-${Date.now()}`);
      await generateSampleSet(warmDir, workers * 2, 99, ['circle', 'square']);
      await runJob(this, warmDir, spec, undefined);
    },
    async stop() {
      await bus.close();
      await Promise.all(procs.map((p) => p.stop()));
      await nats.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** Publishes a folder and times it: from manifest published to every vector stored. */
export async function runJob(c, dir, spec, splits, dtype, extra = {}) {
  const o =
    spec.startsWith('/') || spec.includes('/')
      ? { backbone: spec, overrides: { preprocess: spec.includes('mobilenet') ? 'symmetric' : 'unit' } }
      : { backbone: spec };
  const tp = now();
  const p = await publishDataset(c.bus, dir, { progress: false, ...o, splitsFile: splits, vectorDType: dtype, training: { epochs: 1 }, ...extra });
  const t0 = now();
  let extractedAt;
  for (;;) {
    const s = await readJob(c.bus, p.jobId);
    if (s && !extractedAt && s.state > 2) extractedAt = now();
    if (s && isTerminal(s.state)) return { status: s, seconds: (extractedAt ?? now()) - t0, jobId: p.jobId, publishSeconds: t0 - tp };
    await sleep(50);
  }
}

/** CPU seconds (user + system) a process has used so far, from /proc (Linux); NaN elsewhere. */
export async function cpuSeconds(pid) {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return NaN;
  }
}

/** Bytes each client connection sent to and received from nats-server, by connection name (its monitoring port). */
export async function connectionBytes(monitorPort) {
  const j = await (await fetch(`http://127.0.0.1:${monitorPort}/connz?limit=1024`)).json();
  return (j.connections ?? []).map((c) => ({ name: c.name ?? '', sent: c.in_bytes, received: c.out_bytes }));
}
