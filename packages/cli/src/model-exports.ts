import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { RETRAIN_GRAPH_FILE, RETRAIN_LABELS_FILE, onnxExport, retrainExport, type ModelCard, type ModelFolder, type OnnxEntry } from '@graft/head';
import { getModel, type Bus } from '@graft/protocol';
import { USER_MODEL_POLICY, fetchBackbone, filesFromBundle, graphDefSource, readGraphDefBytes, type ModelFiles } from '@graft/vision';

/*
 * What a model folder carries beyond graft's own files, for other runtimes: model.onnx and
 * labels.txt (phones and servers), and for a frozen-GraphDef backbone retrain.py's output_graph.pb
 * and output_labels.txt; each checked against graft classify before it is written, and said in graft.json.
 */

/** What writeOnnx wrote: model.onnx's entry in graft.json, or why there is none. */
export type OnnxWritten = OnnxEntry | { notWritten: string };

/**
 * The files of a folder's backbone: from the cluster's model store (exactly the files the workers
 * ran, by fingerprint) when a bus is given and has it, else from its source (cached).
 */
export async function backboneFilesOf(folder: ModelFolder, cacheDir?: string, bus?: Bus, onNote?: (message: string) => void): Promise<ModelFiles> {
  const fp = folder.card.backbone.fingerprint;
  const stored = bus
    ? await getModel(bus, fp).catch((err: unknown) => {
        onNote?.(`cannot read the model store (${(err as Error).message}): loading the backbone from its source`);
        return undefined;
      })
    : undefined;
  if (bus && !stored) onNote?.(`backbone ${fp} is not in the cluster's model store: loading it from its source`);
  // The model folder is the user's own: its backbone may be any file they can read.
  return stored
    ? filesFromBundle(stored.modelJson, stored.weights, `model store ${fp}`)
    : (await fetchBackbone(folder.card.backbone, { cacheDir, ...USER_MODEL_POLICY })).files;
}

/** Rewrites a folder's graft.json with its card as it now is. */
async function writeCard(dir: string, folder: ModelFolder): Promise<void> {
  await writeFile(join(dir, 'graft.json'), `${JSON.stringify(folder.card, null, 2)}\n`);
}

/**
 * Writes DIR/model.onnx and DIR/labels.txt when the graph classifies as graft classify does, and
 * says so (or why not) in graft.json. Never throws for the graph's sake: a folder without model.onnx
 * is still a folder.
 */
export async function writeOnnx(dir: string, folder: ModelFolder, files: ModelFiles, cacheDir?: string): Promise<OnnxWritten> {
  const r = await onnxExport(folder, files, { cacheDir });
  if ('notWritten' in r) {
    folder.card.onnx = { notWritten: r.notWritten };
  } else {
    await writeFile(join(dir, r.entry.file), r.bytes);
    await writeFile(join(dir, r.entry.labels), r.labels);
    folder.card.onnx = r.entry;
  }
  await writeCard(dir, folder);
  return folder.card.onnx;
}

/** What writeRetrainGraph wrote, or why not; undefined when the backbone is not a GraphDef. */
export type RetrainWritten = NonNullable<ModelCard['retrainGraph']> | undefined;

/**
 * For a backbone that is a frozen GraphDef (a .pb, or one in an archive), writes DIR/output_graph.pb and
 * DIR/output_labels.txt as retrain.py does, when they read back as the folder classifies; says so in graft.json.
 */
export async function writeRetrainGraph(dir: string, folder: ModelFolder, files: ModelFiles, cacheDir?: string): Promise<RetrainWritten> {
  const spec = folder.card.backbone;
  if (!graphDefSource(spec.url)) return undefined;
  let pb: Uint8Array;
  try {
    pb = await readGraphDefBytes(spec.url, { cacheDir, ...USER_MODEL_POLICY });
  } catch (err) {
    folder.card.retrainGraph = { notWritten: `its backbone's .pb cannot be read here: ${(err as Error).message}` };
    await writeCard(dir, folder);
    return folder.card.retrainGraph;
  }
  const r = await retrainExport(folder, pb, files, cacheDir);
  if ('notWritten' in r) folder.card.retrainGraph = { notWritten: r.notWritten };
  else {
    await writeFile(join(dir, RETRAIN_GRAPH_FILE), r.bytes);
    await writeFile(join(dir, RETRAIN_LABELS_FILE), r.labels);
    folder.card.retrainGraph = { file: RETRAIN_GRAPH_FILE, labels: RETRAIN_LABELS_FILE, maxDifference: r.maxDifference };
  }
  await writeCard(dir, folder);
  return folder.card.retrainGraph;
}

/** What an export says of retrain.py's output_graph.pb. */
export function retrainSummary(dir: string, r: RetrainWritten): string[] {
  if (!r) return [];
  if ('notWritten' in r) return [`output_graph.pb not written: ${r.notWritten}`];
  return [`retrain.py's way out: ${join(dir, r.file)} and ${r.labels} (final_result, within ${r.maxDifference.toExponential(1)} of graft classify)`];
}

/** What an export says of model.onnx, in lines a person reads. */
export function onnxSummary(dir: string, o: OnnxWritten): string[] {
  if ('notWritten' in o) return [`model.onnx not written: ${o.notWritten}`];
  return [
    `phones and servers: ${join(dir, o.file)} (uint8 RGB [n, ${o.inputSize}, ${o.inputSize}, 3] in, ${o.output} out; labels in ${o.labels}; within ${o.maxDifference.toExponential(1)} of graft classify)`,
  ];
}
