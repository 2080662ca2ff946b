// BENCHMARKS.md's scale section (bench/scale.mjs) and its projection to 1 and 10 million photos.
import { f, mark } from './format.mjs';

const gb = (bytes) => `${f(bytes / 1e9, 1)} GB`;
const mib = (bytes) => `${f(bytes / 2 ** 20, 0)} MiB`;

/** The scale section, from one run. */
export function scaleSection(s, tracking, training) {
  const n = s.photos;
  const k = (x) => x.toLocaleString('en');
  const perPhoto = (name) => (s.streamBytes?.[name] ?? 0) / n;
  const stores = {
    images: perPhoto('GRAFT_IMAGES') + perPhoto('OBJ_graft-images'),
    vectors: perPhoto('KV_graft-vectors'),
    prepared: perPhoto('GRAFT_PREPARED'),
    manifests: perPhoto('GRAFT_MANIFESTS') + perPhoto('GRAFT_MANIFEST_PAGES'),
  };
  const ratio = s.allRate / s.firstWindowRate;
  const mem = s.coordinatorBytesPerPhoto;
  const heap = s.heapBytesPerPhoto;
  // Training memory per vector as measured ("Head training on a million vectors"), else its data alone.
  const vectorBytes = training?.heldBytesPerVector ?? 1280 * 4;
  const halfBytes = training?.float16?.heldBytesPerVector ?? 1280 * 2;
  // The job's entries as the coordinator holds them (in columns; runs before them measured the decoded list) and its tracking.
  const held = (tracking?.entriesBytesPerPhoto ?? tracking?.manifestBytesPerPhoto ?? 0) + (tracking?.trackingBytesPerPhoto ?? 0);
  const project = (m) => [
    `| ${k(m)} | ${gb(stores.images * m)} | ${gb(stores.vectors * m)} (${gb((stores.vectors * m) / 2)} as float16) | ${gb(stores.prepared * m)} | ${gb(stores.manifests * m)} | ${gb(heap.atEnd * m)} | ${gb(vectorBytes * m)} / ${gb(halfBytes * m)} |`,
  ];
  return [
    '## Scale: 100,000 photos end to end',
    '',
    `${k(n)} generated, distinct 32 x 32 JPEGs in 10 classes; a backbone that costs nothing (32 px input, 1,280-d vectors); nats-server with graft's settings, two workers, a leading coordinator and a standby. The leader is killed (\`kill -9\`) at 90 % of the extraction. Published in ${f(s.publishSeconds, 0)} s (scan, hash, upload, a manifest of ${k(n)} photos in pages). Job ${s.state}: ${k(s.counts.extracted ?? 0)} extracted, ${k(s.counts.failed ?? 0)} failed.`,
    '',
    '| measurement | result |',
    '|---|---|',
    `| the job published -> its first vector counted (manifest read in pages, ${k(n)} cache lookups, tasks queued) | ${f(s.firstVectorSeconds, 1)} s |`,
    `| images/s over the first ${k(s.firstWindow)} (from the first vector) | ${f(s.firstWindowRate, 0)} |`,
    `| images/s over all ${k(n)} (from the first vector; the kill's pause left out) | ${f(s.allRate, 0)} (${f(ratio)} of the first ${k(s.firstWindow)}) |`,
    `| coordinator resident memory: idle / ${k(s.at10k.done)} photos done / ${k(s.beforeKill?.done ?? 0)} done (the leader) / the end of extraction (the standby that took over) | ${mib(s.idle.rss)} / ${mib(s.at10k.rss)} / ${mib(s.beforeKill?.rss)} / ${mib(s.atEnd.rss)} |`,
    `| coordinator V8 heap the job added, per photo: at ${k(s.beforeKill?.done ?? 0)} done (the leader) / at the end (the standby, the whole job recovered) | ${f(heap.beforeKill, 0)} B / ${f(heap.atEnd, 0)} B |`,
    `| peak RSS: coordinator / nats-server | ${f(s.coordinatorPeak / 2 ** 20, 0)} MiB / ${f(s.natsPeak / 2 ** 20, 0)} MiB |`,
    `| nats-server store bytes per photo: images / vectors / prepared inputs / manifest | ${f(stores.images, 0)} / ${f(stores.vectors, 0)} / ${f(stores.prepared, 0)} / ${f(stores.manifests, 0)} |`,
    `| kill -9 of the leading coordinator at 90 % -> the job moving again (the standby holds the lease and the count grows) | ${f(s.movingAgainSeconds, 1)} s (lease TTL 10 s) |`,
    `| extraction done -> first training epoch recorded | ${f(s.trainingStartSeconds, 1)} s |`,
    `| \`graft status JOB --json\` at ${k(n)} photos (a new process, median of 3) | ${f(s.statusSeconds, 2)} s |`,
    '',
    ...sameDay(s),
    'Targets:',
    '',
    `- ${k(n)} vs ${k(s.firstWindow)} images/s within 10 %: ${f(ratio)}, ${mark(ratio >= 0.9)}`,
    `- coordinator memory <= 1 KB per photo beyond the vectors: ${f(heap.atEnd, 0)} B of V8 heap per photo (the job's entries and its tracking: what grows with the photos), ${mark(heap.atEnd <= 1024)}. Resident memory grew by ${f(mem.atEnd, 0)} B per photo over the idle process, but it stood at ${mib(s.at10k.rss)} with ${k(s.at10k.done)} photos done and ${mib(s.beforeKill?.rss)} with ${k(s.beforeKill?.done ?? 0)}: that growth comes at the job's start (its ${k(n)}-photo manifest read in pages, the cache looked up), and the allocator keeps it; it does not grow with the photos extracted`,
    `- kill -9 at 90 %: moving again in <= 15 s: ${f(s.movingAgainSeconds, 1)} s, ${mark(s.movingAgainSeconds <= 15)} (a standby takes the lease once it went unrenewed for a whole TTL, 10 s; the rest is the standby reading the job back: its record, its manifest's pages, the cache's keys, the tasks on their way)`,
    `- training starts within 30 s of extraction ending: ${f(s.trainingStartSeconds, 1)} s, ${mark(s.trainingStartSeconds <= 30)}`,
    s.manifest
      ? `- a ${k(s.manifest.photos)}-photo manifest publishes (generated list, no extraction): published in ${f(s.manifest.publishSeconds, 1)} s as ${k(s.manifest.pages)} pages (${f(s.manifest.bytes / 1e6, 0)} MB, ${f(s.manifest.bytes / s.manifest.photos, 0)} bytes per photo) and read back whole (${k(s.manifest.readBack)} photos) in ${f(s.manifest.readSeconds, 1)} s, ${mark(s.manifest.readBack === s.manifest.photos)}`
      : '',
    '',
    '### Projected to 1 and 10 million photos',
    '',
    'From the per-photo figures above (a store scales with its photos; the image store holds what was published: 32 px photos here, about 40 KB for clothing-small photos, 3-5 MB for phone photos as published). Training holds the vectors once (1,280-d, outside the V8 heap, at the bytes per vector measured in "Head training on a million vectors" below).',
    '',
    '| photos | image store (these photos) | vector cache | prepared inputs (32 px here; 150 KB a photo at 224 px) | manifest | coordinator heap (entries, tracking) | training vectors in memory (float32 / float16) |',
    '|---|---|---|---|---|---|---|',
    ...project(1e6),
    ...project(1e7),
    '',
    `What would have to be sharded, and how: at 10,000,000 photos one nats-server holds the image store (${gb(40e3 * 1e7)} of clothing-small-sized photos) and the vector cache (${gb(stores.vectors * 1e7)}); both are plain JetStream streams, so a NATS cluster with the streams placed on different servers (or \`graft init --replicas 3\`) spreads them, and the vector cache could be split by fingerprint prefix across buckets. The coordinator holds the job's entries and its tracking (${f(held, 0)} bytes per photo measured in-process at 1,000,000: ${gb(held * 1e7)} at 10 million), one job at a time per leader: past that, jobs would be split into sub-jobs by class or by page of the manifest. Training vectors at 10 million are ${gb(vectorBytes * 1e7)} as float32 and ${gb(halfBytes * 1e7)} as float16 (\`--vector-dtype float16\`): the head trains on them a batch at a time ("Head training on a million vectors"), so they must fit in RAM once; past that they would have to be read page by page from the cache, which graft does not do yet.`,
    '',
  ];
}

/** Head training at a million vectors (bench/training-memory.mjs). */
export function trainingMemorySection(t) {
  const k = (x) => x.toLocaleString('en');
  const h = t.float16;
  return [
    '## Head training on a million vectors',
    '',
    `${k(Math.round(t.vectors / 1.05))} training and ${k(t.vectors - Math.round(t.vectors / 1.05))} validation vectors of ${k(t.dim)} floats (10 classes), one epoch, batches of 256, on the **${t.backend}** backend, in a process of its own with V8's heap capped at 4 GB. The vectors are held once, as rows in host memory (outside V8's heap and the backend's); each batch becomes a tensor only while it trains, and scoring runs 4,096 rows at a time. Before, the set was also copied flat and put whole into one tensor: three times the vectors, and a tensor the wasm backend's 4 GB heap cannot hold past about 840,000 such vectors (4 GB / 5,120 bytes).`,
    '',
    ...(h
      ? [
          '| measurement | float32 | float16 (`--vector-dtype float16`) |',
          '|---|---|---|',
          `| memory per vector held (data: ${k(4 * t.dim)} / ${k(2 * t.dim)} bytes) | ${f(t.heldBytesPerVector, 0)} bytes | ${f(h.heldBytesPerVector, 0)} bytes (${f(t.heldBytesPerVector / h.heldBytesPerVector, 2)}x less) |`,
          `| training's own peak beyond the vectors, per vector | ${f(t.trainingExtraBytesPerVector, 0)} bytes | ${f(h.trainingExtraBytesPerVector, 0)} bytes |`,
          `| peak resident memory of the process | ${f(t.peakGB, 1)} GB | ${f(h.peakGB, 1)} GB |`,
          `| one epoch and its scoring | ${f(t.seconds, 0)} s (validation accuracy ${f(100 * t.valAccuracy, 1)} %) | ${f(h.seconds, 0)} s (validation accuracy ${f(100 * h.valAccuracy, 1)} %) |`,
          '',
          `A job published with \`--vector-dtype float16\` has its vectors travel, be cached and be held for training as half floats, decoded to float32 a batch at a time as each batch becomes a tensor (a float32 job holds float32): ${f(t.heldBytesPerVector / h.heldBytesPerVector, 2)}x less memory for ${f(100 * (h.seconds / t.seconds - 1), 0)} % more time per epoch here, the decoding (a table lookup per value: the standardisation moments once per training, then each epoch the training pass and the scoring of the training and validation sets).`,
        ]
      : [
          '| measurement | result |',
          '|---|---|',
          `| memory per vector held (${k(t.dim)} float32 = ${k(4 * t.dim)} bytes of data) | ${f(t.heldBytesPerVector, 0)} bytes |`,
          `| training's own peak beyond the vectors, per vector | ${f(t.trainingExtraBytesPerVector, 0)} bytes |`,
          `| peak resident memory of the process | ${f(t.peakGB, 1)} GB |`,
          `| one epoch and its scoring | ${f(t.seconds, 0)} s (validation accuracy ${f(100 * t.valAccuracy, 1)} %) |`,
        ]),
    '',
  ];
}

/** The same section measured the same day on the commit before, and what an earlier run of this machine measured: the machine's speed moves between days. */
function sameDay(s) {
  const b = s.sameDayBefore;
  const e = s.earlierRun;
  if (!b) return [];
  return [
    `Against ${b.label} (${b.commit}), measured right after on the same machine: ${f(b.allRate, 0)} images/s over all (${f(s.allRate, 0)} now), moving again ${f(b.movingAgainSeconds, 1)} s after the kill (${f(s.movingAgainSeconds, 1)}), training ${f(b.trainingStartSeconds, 1)} s after extraction (${f(s.trainingStartSeconds, 1)}), ${f(b.heapAtEnd, 0)} B of coordinator heap per photo at the end (${f(s.heapBytesPerPhoto.atEnd, 0)}).` +
      ` Heap figures here are the heap in use as /metrics reads it, with no collection forced, so they move between runs of the same code${b.heapAtEndEarlier ? ` (the commit before read ${f(b.heapAtEndEarlier, 0)} B per photo at the end in an earlier run)` : ''}, and a negative one means less garbage than when idle; the coordinator's own structures are measured after full collections in the section above.` +
      (e
        ? ` The machine ran slower that day than on the section's earlier run (${e.date}: ${f(e.allRate, 0)} images/s over all, moving again in ${f(e.movingAgainSeconds, 1)} s, the 100,000 photos published in ${f(e.publishSeconds, 0)} s and the 1,000,000-photo manifest in ${f(e.manifestPublishSeconds, 1)} s, code that did not change: ${f(s.publishSeconds, 0)} s and ${f(s.manifest?.publishSeconds ?? 0, 1)} s now), so compare rates within one run.`
        : ''),
    '',
  ];
}
