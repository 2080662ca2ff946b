import { resolve } from 'node:path';
import { importRetrainGraph, readModelFolder } from '@graft/head';
import { UsageError, parse, str } from '../args.js';
import { writeBundle } from '../export.js';
import { backboneFilesOf, onnxSummary, retrainSummary, writeOnnx, writeRetrainGraph } from '../model-exports.js';
import { createLogger } from '../logger.js';
import { backendFor, cacheDir } from '../service.js';
import { BACKEND_HELP } from './command.js';
import type { Command } from './command.js';

/* graft import: a model trained elsewhere (TensorFlow's retrain.py) as a graft model folder. */

export const importCmd: Command = {
  summary: 'turn a retrain.py model (output_graph.pb + output_labels.txt) into a graft model folder',
  usage: `graft import OUTPUT_GRAPH.pb --labels OUTPUT_LABELS.txt --out DIR [--preprocess unit|symmetric|none] [--no-bundle]

Reads a graph TensorFlow's retrain.py wrote (and the "TensorFlow for Poets" codelab), with 8-bit
weights too (Dequantize): its base becomes the backbone, cut where retrain.py's head reads it, and
its final_training_ops the head. The folder is checked against the original graph run whole to
final_result (probabilities within 1e-4) before it is written; then graft classify, graft serve and
the browser bundle (web/) work on it, and graft train --backbone OUTPUT_GRAPH.pb retrains its base on new classes.

  --labels FILE       retrain.py's output_labels.txt (one class per line, in the head's order)
  --out DIR           the model folder to write
  --preprocess P      when the graph does no preprocessing itself: unit (x/255), symmetric (x/127.5-1,
                      retrain.py's MobileNet convention, the default for such graphs) or none
  --no-bundle         skip web/ (the browser bundle and its try-it page)
  --cache-dir DIR     model cache
${BACKEND_HELP}`,
  options: {
    labels: { type: 'string' },
    out: { type: 'string' },
    preprocess: { type: 'string' },
    'no-bundle': { type: 'boolean' },
    backend: { type: 'string' },
    'cache-dir': { type: 'string' },
  },
  async run(argv) {
    const { values: v, positionals } = parse(argv, this.options);
    if (positionals.length !== 1) throw new UsageError('import takes one OUTPUT_GRAPH.pb');
    const labels = str(v, 'labels');
    const out = str(v, 'out');
    if (!labels) throw new UsageError('--labels OUTPUT_LABELS.txt is required (retrain.py writes it beside the graph)');
    if (!out) throw new UsageError('--out DIR is required');
    const log = createLogger({ toStderr: true, level: process.env.GRAFT_LOG_LEVEL ?? 'warn' }); // stdout is the summary; logs only when asked
    await backendFor(v, log);
    const dir = resolve(out);
    const r = await importRetrainGraph(positionals[0], labels, dir, { preprocess: str(v, 'preprocess'), cacheDir: cacheDir(v) });
    const b = r.folder.card.backbone;
    const lines = [
      `model written to ${dir}: ${r.folder.card.classes.length} classes (${r.folder.card.classes.join(', ')})`,
      `backbone: ${positionals[0]} cut at ${b.bottleneck} (${b.dim}-d), input ${b.inputNode} ${b.inputSize}x${b.inputSize}, preprocessing ${b.preprocess}`,
      `checked against the original graph on ${r.pictures} pictures: probabilities within ${r.maxDifference.toExponential(1)}`,
    ];
    const folder = await readModelFolder(dir);
    const files = await backboneFilesOf(folder, cacheDir(v));
    lines.push(
      ...onnxSummary(dir, await writeOnnx(dir, folder, files, cacheDir(v))),
      ...retrainSummary(dir, await writeRetrainGraph(dir, folder, files, cacheDir(v))),
    );
    if (!v['no-bundle']) {
      try {
        const bundle = await writeBundle(dir, await readModelFolder(dir), cacheDir(v));
        lines.push(`browser bundle: ${bundle.dir} (try it: graft serve ${dir})`);
      } catch (err) {
        lines.push(`browser bundle not written: ${(err as Error).message}`);
      }
    }
    process.stdout.write(`${lines.join('\n')}\n`);
    return 0;
  },
};
