// The scale section: 100,000 generated, distinct small photos through a real cluster (nats-server
// with graft's own settings, a leading and a standby coordinator, two workers) and a backbone that
// costs nothing, so what is measured is graft itself at scale: throughput early and late, the
// coordinator's memory, the store's bytes per photo, a kill -9 of the leading coordinator at 90 %,
// the wait from extraction to training, and `graft status` at that size. `--sections scale`.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { generateSampleSet, publishDataset } from '@graft/cli';
import { JobState, STREAMS, codecs, freePort, isTerminal, openBus, publishManifest, readJob, readLease, readManifest, startLocalNats } from '@graft/protocol';
import { CLI, graft, now, procMemory, sleep, waitForReadyz } from './lib.mjs';
import { zeroCostModel } from './pipeline.mjs';

const run = promisify(execFile);

/** n distinct 32 x 32 JPEGs in 10 class folders (noise seeded by index, a colour per class). @throws when two came out the same. */
export async function photos(dir, n, offset = 0) {
  for (let c = 0; c < 10; c++) await mkdir(join(dir, `class-${c}`), { recursive: true });
  const seen = new Set();
  const one = async (k) => {
    const i = k + offset;
    const px = Buffer.alloc(32 * 32 * 3);
    let seed = (i * 2654435761 + 1) >>> 0;
    for (let j = 0; j < px.length; j++) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      px[j] = ((seed >>> 24) & 0x7f) + (j % 3 === i % 3 ? 128 : 0);
    }
    const jpeg = await sharp(px, { raw: { width: 32, height: 32, channels: 3 } })
      .jpeg({ quality: 85 })
      .toBuffer();
    seen.add(createHash('sha256').update(jpeg).digest('hex'));
    await writeFile(join(dir, `class-${i % 10}`, `p${i}.jpg`), jpeg);
  };
  for (let i = 0; i < n; i += 256) await Promise.all(Array.from({ length: Math.min(256, n - i) }, (_, k) => one(i + k)));
  if (seen.size !== n) throw new Error(`only ${seen.size} of ${n} generated photos are distinct`);
}

/** A coordinator's memory now: V8 heap in use (its /metrics), resident and peak (/proc). */
export async function snapshot(c) {
  const text = await (await fetch(`http://127.0.0.1:${c.port}/metrics`)).text().catch(() => '');
  return { heap: Number(/^nodejs_heap_size_used_bytes ([0-9.e+]+)/m.exec(text)?.[1] ?? NaN), ...(await procMemory(c.child.pid)) };
}

/** Starts a coordinator with metrics: its process and port. */
export async function coordinator(url) {
  const port = await freePort();
  const p = graft(['coordinator', '--nats', url, '--allow-model-files', '--metrics-port', String(port)]);
  await waitForReadyz(port, { anyAnswer: true }); // a standby answers, not ready
  return { ...p, port };
}

/** A cluster for the zero-cost backbone: nats-server in a new folder under `work`, a coordinator with metrics and two workers, all ready. stop() ends them (and what was pushed to procs) and removes the folder. */
export async function zeroCostCluster(work, tag) {
  const dataDir = await mkdtemp(join(work, `nats-${tag}-`));
  const nats = await startLocalNats({ dataDir });
  const procs = [];
  const stop = async () => {
    await Promise.all(procs.filter((p) => !p.child.signalCode && p.child.exitCode === null).map((p) => p.stop()));
    await nats.stop();
    await rm(dataDir, { recursive: true, force: true });
  };
  try {
    const leader = await coordinator(nats.url);
    procs.push(leader);
    const workerPorts = [await freePort(), await freePort()];
    for (const p of workerPorts) procs.push(graft(['worker', '--nats', nats.url, '--metrics-port', String(p)]));
    for (const p of workerPorts) await waitForReadyz(p);
    return { nats, leader, procs, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Follows the job to its end: throughput windows, memory, the kill at 90 %, extraction to training. */
async function follow(bus, jobId, n, leader, standby, nats) {
  const r = { firstWindow: Math.min(10_000, Math.round(n / 10)) };
  const t0 = now();
  let killedAt;
  let doneAtKill;
  let holderAtKill;
  let last;
  for (;;) {
    const s = await readJob(bus, jobId).catch(() => undefined);
    const c = s?.counts ?? {};
    const done = (c.extracted ?? 0) + (c.cached ?? 0) + (c.failed ?? 0);
    // The windows start at the first vector: what comes before (the manifest read, the cache looked up) is measured on its own.
    if (r.firstVectorSeconds === undefined && done > 0) r.firstVectorSeconds = now() - t0;
    if (!r.firstWindowSeconds && done >= r.firstWindow) {
      r.firstWindowSeconds = now() - t0 - r.firstVectorSeconds;
      r.at10k = { done, ...(await snapshot(leader)) };
    }
    if (s?.state === JobState.JOB_STATE_EXTRACTING && !killedAt) last = { done, ...(await snapshot(leader)) };
    if (!killedAt && done >= 0.9 * n && s?.state === JobState.JOB_STATE_EXTRACTING) {
      killedAt = now();
      doneAtKill = done;
      holderAtKill = (await readLease(bus))?.lease.holder;
      r.beforeKill = last;
      leader.child.kill('SIGKILL');
      await new Promise((res) => (leader.child.exitCode !== null || leader.child.signalCode ? res() : leader.child.once('exit', res)));
    }
    // Moving again: the standby holds the lease and the job's count has grown since (a write the dead leader had in flight does not count).
    if (killedAt && !r.movingAgainSeconds && done > doneAtKill && (await readLease(bus))?.lease.holder !== holderAtKill)
      r.movingAgainSeconds = now() - killedAt;
    if (killedAt && s?.state === JobState.JOB_STATE_EXTRACTING) last = { done, ...(await snapshot(standby)) };
    if (s && s.state > JobState.JOB_STATE_EXTRACTING && !r.extractedSeconds) {
      r.extractedSeconds = now() - t0;
      r.atEnd = last;
    }
    if (s?.training?.epoch && !r.firstEpochSeconds) r.firstEpochSeconds = now() - t0;
    if (s && isTerminal(s.state)) {
      r.state = s.state === JobState.JOB_STATE_DONE ? 'done' : `failed: ${s.error}`;
      r.counts = { ...s.counts };
      break;
    }
    await sleep(200);
  }
  r.coordinatorPeak = Math.max((await procMemory(standby.child.pid)).peak, r.beforeKill?.peak ?? 0);
  r.natsPeak = (await procMemory(nats.process.pid)).peak;
  return r;
}

/** A generated manifest of a million photos (no images: nothing is extracted), published and read back on its own nats-server. */
async function millionManifest(work, n) {
  const dataDir = await mkdtemp(join(work, 'nats-manifest-'));
  const nats = await startLocalNats({ dataDir });
  const bus = await openBus({ servers: nats.url });
  try {
    const images = Array.from({ length: n }, (_, i) => ({
      sha256: createHash('sha256').update(String(i)).digest('hex'),
      label: `class-${i % 1000}`,
      split: 0,
      path: `class-${i % 1000}/IMG_${String(i).padStart(7, '0')}.jpg`,
      sizeBytes: 3_500_000,
      source: '',
      originalSha256: '',
    }));
    const manifest = codecs.manifest.create({
      datasetId: 'million',
      name: 'million',
      classes: Array.from({ length: 1000 }, (_, c) => `class-${c}`),
      images,
      createdAtMs: Date.now(),
    });
    let t = now();
    const jobId = await publishManifest(bus, manifest, 'million-');
    const publishSeconds = now() - t;
    t = now();
    const back = await readManifest(bus, jobId);
    const readSeconds = now() - t;
    const pages = await bus.jsm.streams.info(STREAMS.manifestPages);
    const r = { photos: n, publishSeconds, readSeconds, readBack: back?.images.length ?? 0, pages: pages.state.messages, bytes: pages.state.bytes };
    console.error(
      `a ${n}-photo manifest: published in ${publishSeconds.toFixed(1)} s as ${r.pages} pages (${(r.bytes / 1e6).toFixed(0)} MB), read back whole in ${readSeconds.toFixed(1)} s`,
    );
    return r;
  } finally {
    await bus.close();
    await nats.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

/** The scale section. */
export async function benchScale(work, { quick }) {
  const n = quick ? 10_000 : 100_000;
  console.error(`\n== scale: ${n.toLocaleString('en')} generated photos, a zero-cost backbone, two workers`);
  const dir = join(work, 'scale-photos');
  let t = now();
  await photos(dir, n);
  console.error(`generated in ${(now() - t).toFixed(0)} s`);
  const model = await zeroCostModel(join(work, 'scale-model'), { size: 32 });
  const { nats, leader, procs, stop } = await zeroCostCluster(work, 'scale');
  try {
    const bus = await openBus({ servers: nats.url }, { create: false });
    // A warm-up job (the model loaded everywhere), then a standby coordinator, then the measured job.
    const warm = await publishDataset(bus, await generateSampleSet(join(work, 'scale-warm'), 4, 3, ['circle', 'square']), {
      progress: false,
      backbone: model,
      training: { epochs: 1 },
    });
    while (!isTerminal((await readJob(bus, warm.jobId))?.state)) await sleep(200);
    const idle = await snapshot(leader);
    const standby = await coordinator(nats.url);
    procs.push(standby);
    await sleep(2000);
    const standbyIdle = await snapshot(standby);
    t = now();
    const job = await publishDataset(bus, dir, { progress: false, backbone: model, training: { epochs: 1 } });
    const publishSeconds = now() - t;
    console.error(`published ${n} photos in ${publishSeconds.toFixed(0)} s`);
    const r = await follow(bus, job.jobId, n, leader, standby, nats);
    const statusTimes = [];
    for (let i = 0; i < 3; i++) {
      t = now();
      await run(process.execPath, [CLI, 'status', job.jobId, '--json', '--nats', nats.url], { maxBuffer: 64 * 1024 * 1024 });
      statusTimes.push(now() - t);
    }
    const jsz = await (await fetch(`http://127.0.0.1:${nats.monitorPort}/jsz?streams=true`)).json();
    const streams = Object.fromEntries((jsz.account_details ?? []).flatMap((a) => a.stream_detail ?? []).map((s) => [s.name, s.state.bytes]));
    await bus.close();
    const out = {
      photos: n,
      publishSeconds,
      ...r,
      idle,
      standbyIdle,
      firstWindowRate: r.firstWindow / r.firstWindowSeconds,
      // The kill's pause is left out: it is measured on its own.
      allRate: n / (r.extractedSeconds - r.firstVectorSeconds - (r.movingAgainSeconds ?? 0)),
      killed: r.beforeKill !== undefined,
      trainingStartSeconds: r.firstEpochSeconds - r.extractedSeconds,
      statusSeconds: statusTimes.sort((a, b) => a - b)[1],
      storeBytes: jsz.store ?? jsz.storage,
      streamBytes: streams,
    };
    // Memory the job added to the coordinator running it: the leader at 10k and at 90 %, the standby (which took over) at the end of extraction.
    out.coordinatorBytesPerPhoto = {
      at10k: (r.at10k.rss - idle.rss) / r.at10k.done,
      beforeKill: (r.beforeKill.rss - idle.rss) / r.beforeKill.done,
      atEnd: (r.atEnd.rss - standbyIdle.rss) / n,
    };
    out.heapBytesPerPhoto = {
      at10k: (r.at10k.heap - idle.heap) / r.at10k.done,
      beforeKill: (r.beforeKill.heap - idle.heap) / r.beforeKill.done,
      atEnd: (r.atEnd.heap - standbyIdle.heap) / n,
    };
    out.manifest = await millionManifest(work, quick ? 100_000 : 1_000_000);
    console.error(
      `scale: ${out.firstWindowRate.toFixed(0)} img/s over the first ${r.firstWindow}, ${out.allRate.toFixed(0)} over all; moving again ${r.movingAgainSeconds?.toFixed(1)} s after the kill; training ${out.trainingStartSeconds.toFixed(1)} s after extraction; status ${out.statusSeconds.toFixed(2)} s; coordinator +${out.coordinatorBytesPerPhoto.atEnd.toFixed(0)} B RSS per photo`,
    );
    return out;
  } finally {
    await stop();
    await rm(dir, { recursive: true, force: true });
  }
}
