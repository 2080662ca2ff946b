import { classifyFile, loadClassifier } from '@graft/head';
import { USER_MODEL_POLICY, inspectModel } from '@graft/vision';
import { UsageError, int, parse, str } from '../args.js';
import { createLogger } from '../logger.js';
import { backendFor, cacheDir } from '../service.js';
import { BACKEND_HELP, CACHE_HELP } from './command.js';
import type { Command } from './command.js';

/* Commands about models, no cluster needed: graft inspect, classify. */

const inspect: Command = {
  summary: 'list the nodes or layers of a model (.pb, .onnx, TF.js model.json, catalogue name) and where its bottleneck is',
  usage: `graft inspect MODEL [--json] [--input-size N] [--input-node NODE]

MODEL is a frozen TensorFlow GraphDef (.pb, or ARCHIVE.zip#member.pb / .tgz#member.pb), an ONNX
model (.onnx), a TF.js model.json (file or folder), a URL of any of them, or a catalogue name. Prints
every node or layer (an ONNX node by the value it makes) with
its op and output shape (for one image), the input graft feeds (and, for a .pb, the decoding head it
replaces and the preprocessing the graph does itself) and the likely bottlenecks: the pooled output
before the classifier. Use one with graft train --bottleneck.

  --json              one JSON object, for scripts
  --input-size N      input edge when the model does not say it
  --input-node NODE   the node to feed, when graft cannot tell (a .pb without a decoding head)
${BACKEND_HELP}
${CACHE_HELP}`,
  options: {
    json: { type: 'boolean' },
    'input-size': { type: 'string' },
    'input-node': { type: 'string' },
    backend: { type: 'string' },
    'cache-dir': { type: 'string' },
  },
  async run(argv) {
    const { values: v, positionals } = parse(argv, this.options);
    if (positionals.length !== 1) throw new UsageError('inspect takes exactly one model');
    // Logs go to stderr: stdout is the answer (with --json, exactly one JSON document).
    const log = createLogger({ toStderr: true, level: process.env.GRAFT_LOG_LEVEL ?? 'warn' });
    await backendFor(v, log);
    // The user names their own model: any file they can read.
    const r = await inspectModel(positionals[0], {
      ...USER_MODEL_POLICY,
      cacheDir: cacheDir(v),
      inputSize: int(v, 'input-size', 1),
      inputNode: str(v, 'input-node'),
    });
    if (v.json) {
      process.stdout.write(`${JSON.stringify(r)}\n`);
      return 0;
    }
    const width = Math.min(60, Math.max(...r.nodes.map((n) => n.name.length)));
    const lines = r.nodes.map((n) => {
      const marks = [n.name === r.input?.name ? '<- input' : '', r.bottleneckCandidates.includes(n.name) ? '<- bottleneck candidate' : '']
        .filter(Boolean)
        .join(' ');
      return `${n.name.padEnd(width)}  ${n.op.padEnd(32)}  ${(n.shape ? `[${n.shape.join(', ')}]` : '-').padEnd(18)} ${marks}`.trimEnd();
    });
    const summary = [
      `${r.origin} (${r.format}, ${r.nodes.length} ${r.format === 'layers-model' ? 'layers' : 'nodes'})`,
      r.input
        ? `input: ${r.input.name}, ${r.input.size}x${r.input.size} RGB${r.input.decodingReplaced ? " (its image decoding head is replaced by graft's)" : ''}${r.input.preprocessing ? `; the graph computes ${r.input.preprocessing} itself` : ''}`
        : 'input: not found (pass --input-node)',
      ...(r.input?.suggestedPreprocessing
        ? [`preprocessing: ${r.input.suggestedPreprocessing.formula} (${r.input.suggestedPreprocessing.why}; --preprocess overrides it)`]
        : []),
      ...(r.onnx
        ? [
            `ONNX opset ${r.onnx.opset}${r.onnx.producer ? `, written by ${r.onnx.producer}` : ''}; input ${r.onnx.layout === 'nchw' ? 'channels first (NCHW)' : 'channels last (NHWC)'}: graft transposes and preprocesses inside the graph (--preprocess: unit by default; torchvision's models take imagenet)`,
            ...(r.onnx.classifier
              ? [
                  `classifier: ${r.onnx.classifier.node} (${r.onnx.classifier.op}${r.onnx.classifier.classes ? ` over ${r.onnx.classifier.classes} classes` : ''}); graft cuts before it at the first candidate unless --bottleneck says otherwise`,
                ]
              : []),
          ]
        : []),
      ...(r.retrain
        ? [
            `retrain.py head: ${r.retrain.output} over ${r.retrain.classes} classes, reading ${r.retrain.dim}-d ${r.retrain.bottleneck} (the bottleneck graft cuts at; graft import makes it a model folder)`,
          ]
        : []),
      ...(r.catalogue
        ? [`bottleneck: ${r.catalogue.bottleneck} (where graft cuts ${r.catalogue.id}, its catalogue entry's choice; --bottleneck picks another)`]
        : []),
      `bottleneck candidates: ${r.bottleneckCandidates.join(', ') || 'none found (pick a pooled node below)'}`,
      ...(r.note ? [r.note] : []),
    ];
    process.stdout.write(`${lines.join('\n')}\n\n${summary.join('\n')}\n`);
    return 0;
  },
};

const classify: Command = {
  summary: 'classify images with an exported model (no NATS needed)',
  usage: `graft classify MODEL_DIR IMAGE... [--top K] [--json] [--runtime graft|onnx]

  --top K       labels to show per image (default 3)
  --json        one JSON document: an array with one object per image ({image, predictions} or {image, error})
  --runtime R   graft (default): the folder's backbone as graft runs it, then its head;
                onnx: the folder's model.onnx on ONNX Runtime, as an app would run it
${BACKEND_HELP}
${CACHE_HELP}`,
  options: { top: { type: 'string' }, json: { type: 'boolean' }, runtime: { type: 'string' }, backend: { type: 'string' }, 'cache-dir': { type: 'string' } },
  async run(argv) {
    const { values: v, positionals } = parse(argv, this.options);
    if (positionals.length < 2) throw new UsageError('classify takes MODEL_DIR and at least one IMAGE');
    const log = createLogger({ toStderr: true, level: process.env.GRAFT_LOG_LEVEL ?? 'warn' });
    await backendFor(v, log);
    const runtime = str(v, 'runtime') ?? 'graft';
    if (runtime !== 'graft' && runtime !== 'onnx') throw new UsageError(`--runtime must be graft or onnx, got ${runtime}`);
    // The --backend choice is the graft runtime's; model.onnx runs on ONNX Runtime's CPU kernels.
    const c = await loadClassifier(positionals[0], { cacheDir: cacheDir(v), use: runtime });
    const k = int(v, 'top', 1) ?? 3;
    let failed = 0;
    const answers: object[] = [];
    for (const img of positionals.slice(1)) {
      try {
        const preds = await classifyFile(c, img, k);
        if (v.json) answers.push({ image: img, predictions: preds });
        else process.stdout.write(`${img}: ${preds.map((p) => `${p.label} ${(100 * p.probability).toFixed(1)}%`).join(', ')}\n`);
      } catch (err) {
        failed++;
        const reason = (err as Error).message;
        if (v.json) answers.push({ image: img, error: reason });
        else process.stderr.write(`${img}: ${reason}\n`);
      }
    }
    c.dispose();
    if (v.json) process.stdout.write(`${JSON.stringify(answers)}\n`);
    return failed ? 1 : 0;
  },
};

export { inspect, classify };
