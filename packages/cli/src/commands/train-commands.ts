import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { classifyFile, loadClassifier } from '@graft/head';
import { NATS_HELP, NATS_OPTIONS, PUBLISH_HELP, PUBLISH_OPTIONS, UsageError, parse, publishOptions, str, type Options } from '../args.js';
import { createLogger } from '../logger.js';
import { isImageListFile } from '../image-list.js';
import { planDataset } from '../publish.js';
import { backendFor } from '../service.js';
import { trainFolder } from '../train-flow.js';
import { BACKEND_HELP, CACHE_HELP, THREADS_HELP } from './command.js';
import type { Command } from './command.js';

/* Commands that do the whole job on a local cluster: graft train, demo. */

const TRAIN_OPTIONS: Options = {
  ...NATS_OPTIONS,
  ...PUBLISH_OPTIONS,
  out: { type: 'string' },
  workers: { type: 'string' },
  data: { type: 'string' },
  backend: { type: 'string' },
  threads: { type: 'string' },
  'cache-dir': { type: 'string' },
  'no-bundle': { type: 'boolean' },
  json: { type: 'boolean' },
};

const train: Command = {
  summary: 'the one-command path: publish, extract, train, evaluate and export',
  usage: `graft train DIR|LIST [--out DIR] [--nats URL] [--workers N] [publish options]

Uses --nats, or starts a local cluster (nats-server + coordinator + workers, data in --data),
publishes DIR (a class-per-folder tree) or LIST (a .csv, .tsv or .jsonl image list), shows
extraction and training progress, prints the evaluation and writes the model to --out
(default ./graft-model), with report.html and web/ (graft serve DIR opens its try-it page).

  --out DIR                 model folder (default ./graft-model)
  --workers N               workers of the local cluster (default one per two cores, two ONNX Runtime threads each)
  --data DIR                local cluster data folder (default ~/.graft/cluster); the vector cache lives here
  --cache-dir DIR           model disk cache of this command and the local cluster (default $GRAFT_CACHE_DIR,
                            else ~/.cache/graft/models)
  --no-bundle               skip the browser bundle (DIR/web: the model as one TF.js model and a try-it page)
  --json                    one JSON document on stdout: the job's record and what was written (the summary goes to stderr)
${PUBLISH_HELP}
${BACKEND_HELP}
${THREADS_HELP}
${NATS_HELP}`,
  options: TRAIN_OPTIONS,
  async run(argv) {
    const { values: v, positionals } = parse(argv, this.options);
    if (positionals.length !== 1) throw new UsageError('train takes exactly one folder or list file');
    if (!existsSync(positionals[0])) throw new UsageError(`no such ${isImageListFile(positionals[0]) ? 'file' : 'folder'}: ${positionals[0]}`);
    if (v['dry-run']) {
      const plan = await planDataset(positionals[0], publishOptions(v));
      process.stdout.write(`${plan.text}\n`);
      return plan.ok ? 0 : 1;
    }
    return trainFolder(positionals[0], v, resolve(str(v, 'out') ?? 'graft-model'));
  },
};

/** The photos `graft demo` trains on, shipped in this package (samples/SOURCE.md: CC0). */
const SAMPLES = fileURLToPath(new URL('../../samples/', import.meta.url));

const demo: Command = {
  summary: 'train on the bundled real photos with a local cluster, then classify a held-out photo',
  usage: `graft demo [--out DIR] [--workers N] [--backbone SPEC]

What npm start runs: trains a classifier on 360 real photos of clothing in 6 classes (60 each,
CC0, shipped with graft) with the embedded ImageNet MobileNetV2 1.0 and a local cluster, prints
the test accuracy per class on the 20 % held out, and classifies a photo it never saw.

  --out DIR           model folder (default ./graft-model)
  --workers N         extractor processes (default one per two cores, two ONNX Runtime threads each)
  --data DIR          local cluster data folder (default ~/.graft/cluster)
  --backbone SPEC     default auto (mobilenet_v2_100, embedded, no network)
  --no-bundle         skip the browser bundle (DIR/web)
${BACKEND_HELP}
${THREADS_HELP}
${CACHE_HELP}`,
  options: {
    out: { type: 'string' },
    workers: { type: 'string' },
    data: { type: 'string' },
    backbone: { type: 'string' },
    'no-bundle': { type: 'boolean' },
    backend: { type: 'string' },
    threads: { type: 'string' },
    'cache-dir': { type: 'string' },
  },
  async run(argv) {
    const { values: v } = parse(argv, this.options, false);
    const data = join(SAMPLES, 'clothing');
    process.stderr.write(`sample set: ${data} (6 classes, 60 real photos each; 15 % held out for validation, 20 % for the test)\n`);
    const out = resolve(str(v, 'out') ?? 'graft-model');
    const args = { 'validation-percent': '15', 'test-percent': '20', ...v };
    const code = await trainFolder(data, args, out);
    if (code !== 0) return code;
    const heldOut = join(SAMPLES, 'held-out', 'shoes.jpg');
    await backendFor(v, createLogger({ toStderr: true, level: 'warn' }));
    const c = await loadClassifier(out);
    const preds = await classifyFile(c, heldOut, 3);
    c.dispose();
    process.stdout.write(
      `\nheld-out photo (shoes the model never saw, ${heldOut}): ${preds.map((p) => `${p.label} ${(100 * p.probability).toFixed(1)}%`).join(', ')}\n`,
    );
    process.stdout.write(
      `\nHow: 6 of clothing-small's 10 classes (which and why: ${join(SAMPLES, 'SOURCE.md')}), 60 photos each, the\nembedded MobileNetV2 1.0 and the default head. Your own photos: graft train DIR. On a phone: ${join(out, 'model.onnx')}.\n`,
    );
    return preds[0]?.label === 'shoes' ? 0 : 1;
  },
};

export { train, demo };
