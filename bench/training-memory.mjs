// Head training at a million vectors: the memory per vector while a head trains on 1,000,000 x 1,280-d
// vectors (10 classes), in a process of its own (its resident memory measured from /proc), on the
// backend graft picks here (wasm: its heap stops at 4 GB, less than the vectors). Part of
// `npm run bench` (`--sections training`).
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { procMemory } from './lib.mjs';

const run = promisify(execFile);


/** In the child: n vectors around 10 class centres, one epoch of training, memory before and after. */
async function child(n, dim) {
  const { initBackend } = await import('@graft/vision');
  const { trainHead } = await import('@graft/head');
  const backend = (await initBackend()).name;
  const base = await procMemory();
  let s = 12345;
  const rand = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 4294967296);
  const make = (count) => {
    const x = new Array(count);
    const y = new Array(count);
    for (let i = 0; i < count; i++) {
      const c = i % 10;
      const v = new Float32Array(dim);
      for (let j = 0; j < dim; j++) v[j] = rand() + (j % 10 === c ? 0.5 : 0);
      x[i] = v;
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

/** The section: one child process. */
export async function benchTraining({ quick }) {
  const n = quick ? 100_000 : 1_000_000;
  console.error(`\n== head training on ${n.toLocaleString('en')} x 1,280-d vectors`);
  const { stdout } = await run(process.execPath, ['--max-old-space-size=4096', fileURLToPath(import.meta.url), '--child', String(n), '1280'], { maxBuffer: 1 << 20, timeout: 3_600_000 });
  const r = JSON.parse(stdout);
  console.error(`trained 1 epoch on ${r.vectors} vectors (${r.backend}) in ${r.seconds.toFixed(0)} s: ${r.heldBytesPerVector.toFixed(0)} B held per vector, peak ${r.peakGB.toFixed(1)} GB`);
  return r;
}

if (process.argv[2] === '--child') await child(Number(process.argv[3]), Number(process.argv[4]));
