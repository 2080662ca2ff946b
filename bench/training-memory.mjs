// Head training at a million vectors: the memory per vector while a head trains on 1,000,000 x 1,280-d
// vectors (10 classes), held as float32 and as half floats (what a `--vector-dtype float16` job holds),
// each in a process of its own (its resident memory measured from /proc), on the backend graft picks
// here (wasm: its heap stops at 4 GB, less than the vectors). Part of `npm run bench` (`--sections training`).
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { procMemory } from './lib.mjs';

const run = promisify(execFile);

/** In the child: n vectors around 10 class centres, one epoch of training, memory before and after. */
async function child(n, dim, dtype) {
  const { initBackend } = await import('@graft/vision');
  const { trainHead } = await import('@graft/head');
  const { encodeHalf } = await import('@graft/protocol');
  const backend = (await initBackend()).name;
  const base = await procMemory();
  let s = 12345;
  const rand = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 4294967296;
  // Half rows are encoded from one scratch row: no float32 row per vector is made and dropped (the
  // allocator would keep what it freed, and the resident memory would count it).
  const scratch = new Float32Array(dim);
  const make = (count) => {
    const x = new Array(count);
    const y = new Array(count);
    for (let i = 0; i < count; i++) {
      const c = i % 10;
      const v = dtype === 'float16' ? scratch : new Float32Array(dim);
      for (let j = 0; j < dim; j++) v[j] = rand() + (j % 10 === c ? 0.5 : 0);
      x[i] = dtype === 'float16' ? encodeHalf(v) : v;
      y[i] = c;
    }
    return { x, y };
  };
  const train = make(n);
  const validation = make(Math.round(n / 20));
  const held = await procMemory();
  const t0 = performance.now();
  const head = await trainHead({ dim, classes: Array.from({ length: 10 }, (_, c) => `c${c}`), train, validation }, { epochs: 1, patience: 0, batchSize: 256 });
  const seconds = (performance.now() - t0) / 1000;
  const after = await procMemory();
  const vectors = n + validation.x.length;
  process.stdout.write(
    JSON.stringify({
      dtype,
      backend,
      vectors,
      dim,
      seconds,
      valAccuracy: head.history.at(-1).valAccuracy,
      heldBytesPerVector: (held.rss - base.rss) / vectors,
      peakBytesPerVector: (after.peak - base.rss) / vectors,
      trainingExtraBytesPerVector: (after.peak - held.rss) / vectors,
      peakGB: after.peak / 1e9,
    }),
  );
}

/** The section: one child process per dtype; the float32 figures at the top level, float16's under `float16`. */
export async function benchTraining({ quick }) {
  const n = quick ? 100_000 : 1_000_000;
  const runs = {};
  for (const dtype of ['float32', 'float16']) {
    console.error(`\n== head training on ${n.toLocaleString('en')} x 1,280-d vectors held as ${dtype}`);
    const { stdout } = await run(process.execPath, ['--max-old-space-size=4096', fileURLToPath(import.meta.url), '--child', String(n), '1280', dtype], {
      maxBuffer: 1 << 20,
      timeout: 3_600_000,
    });
    const r = JSON.parse(stdout);
    console.error(
      `trained 1 epoch on ${r.vectors} vectors (${r.backend}) in ${r.seconds.toFixed(0)} s: ${r.heldBytesPerVector.toFixed(0)} B held per vector, peak ${r.peakGB.toFixed(1)} GB`,
    );
    runs[dtype] = r;
  }
  return { ...runs.float32, float16: runs.float16 };
}

if (process.argv[2] === '--child') await child(Number(process.argv[3]), Number(process.argv[4]), process.argv[5] ?? 'float32');
