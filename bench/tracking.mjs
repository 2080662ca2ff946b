// The coordinator's memory per photo while a job runs: the job's entries it holds (ManifestEntries:
// columns, read a page at a time) against the decoded list it held before, and its tracking of
// which images the job still waits for (JobImages: an index and typed arrays) against the maps it
// used before (id -> paths, id -> entries waiting, fingerprint.id -> waiting jobs). In-process,
// synthetic manifests of N photos, heap measured after a full GC.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ManifestEntries, JobImages } from '@graft/coordinator';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc');
const run = promisify(execFile);

/** Heap in use after full collections (several, with turns of the event loop between: weak and finalized objects go too). */
async function heap() {
  for (let i = 0; i < 4; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers; // typed arrays live outside the heap
}

const CLASSES = Array.from({ length: 100 }, (_, c) => `class-${c}`);

function entryOf(i) {
  const sha256 = createHash('sha256').update(String(i)).digest('hex');
  return {
    sha256,
    label: `class-${i % 100}`,
    path: `class-${i % 100}/IMG_${String(i).padStart(7, '0')}.jpg`,
    sizeBytes: 3_500_000,
    split: 0,
    source: '',
    originalSha256: '',
  };
}

function manifestOf(n) {
  const images = new Array(n);
  for (let i = 0; i < n; i++) images[i] = entryOf(i);
  return { jobId: 'bench', classes: CLASSES, images, training: {} };
}

/** The entries as the manifest's pages bring them (10,000 a page), none kept once added. */
async function* pagesOf(n) {
  for (let start = 0; start < n; start += 10_000) yield Array.from({ length: Math.min(10_000, n - start) }, (_, k) => entryOf(start + k));
}

/** The structures the tracker kept before JobImages, per job and per cluster. */
function oldTracking(manifest, fp) {
  const pathsBySha = new Map();
  for (const img of manifest.images) {
    const l = pathsBySha.get(img.sha256);
    if (l) l.push(img.path);
    else pathsBySha.set(img.sha256, [img.path]);
  }
  const pending = new Map();
  const waiting = new Map();
  for (const [sha, paths] of pathsBySha) {
    pending.set(sha, paths.length);
    waiting.set(`${fp}.${sha}`, new Set([manifest.jobId]));
  }
  return { pathsBySha, pending, waiting, sourceOfPath: new Map() };
}

/** Each size in a process of its own: one size's freed heap would blur the next one's figures. */
export async function benchTracking(sizes = [100_000, 1_000_000]) {
  const rows = [];
  for (const n of sizes) {
    const { stdout } = await run(process.execPath, ['--max-old-space-size=8192', fileURLToPath(import.meta.url), String(n)], { maxBuffer: 1 << 20 });
    const row = JSON.parse(stdout);
    process.stderr.write(
      `tracking ${n}: entries ${row.entriesBytesPerPhoto.toFixed(0)} B/photo (decoded list: ${row.manifestBytesPerPhoto.toFixed(0)}), tracking ${row.trackingBytesPerPhoto.toFixed(0)} B/photo (before: ${row.oldTrackingBytesPerPhoto.toFixed(0)})\n`,
    );
    rows.push(row);
  }
  return rows;
}

async function measure(n) {
  {
    const h0 = await heap();
    const list = await ManifestEntries.read({ classes: CLASSES, training: {} }, pagesOf(n));
    const h1 = await heap();
    const images = new JobImages(list, {});
    for (const id of images.all()) images.wait(id);
    const h2 = await heap();
    const manifest = manifestOf(n);
    const h3 = await heap();
    const old = oldTracking(manifest, '0123456789abcdef');
    const h4 = await heap();
    return {
      photos: n,
      entriesBytesPerPhoto: (h1 - h0) / n,
      manifestBytesPerPhoto: (h3 - h2) / n,
      trackingBytesPerPhoto: (h2 - h1) / n,
      oldTrackingBytesPerPhoto: (h4 - h3) / n,
      waiting: images.size,
      kept: old.pending.size,
      listed: list.length,
    };
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) process.stdout.write(JSON.stringify(await measure(Number(process.argv[2]))));
