import * as tf from '@tensorflow/tfjs';
import { loadHeadModel, predict, type ModelFolder } from '@graft/head';
import { backboneFromFiles, type ModelFiles } from '@graft/vision';

/*
 * A bundle's model checked against graft classify: loaded as the try-it page loads it, run on
 * deterministic pictures beside the backbone and head as workers and classify run them.
 */

/** One TF.js model: model.json's content and its weights. */
export interface WebModel {
  format: 'layers-model' | 'graph-model';
  json: Record<string, unknown>;
  weights: Uint8Array;
}

/** Loads a bundle's model from memory (as the try-it page does from its files). */
export async function loadWebModel(m: WebModel): Promise<tf.LayersModel | tf.GraphModel> {
  const artifacts: tf.io.ModelArtifacts = {
    modelTopology: m.json.modelTopology as tf.io.ModelArtifacts['modelTopology'],
    weightSpecs: (m.json.weightsManifest as { weights: tf.io.WeightsManifestEntry[] }[]).flatMap((g) => g.weights),
    weightData: m.weights.buffer.slice(m.weights.byteOffset, m.weights.byteOffset + m.weights.byteLength) as ArrayBuffer,
    format: m.format,
  };
  return m.format === 'graph-model' ? tf.loadGraphModel(tf.io.fromMemory(artifacts)) : tf.loadLayersModel(tf.io.fromMemory(artifacts));
}

/** Deterministic test pictures: smooth gradients with some texture, so activations are not degenerate. */
function checkImages(size: number, count: number): Uint8Array[] {
  let seed = 12345;
  const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
  return Array.from({ length: count }, (_, k) => {
    const px = new Uint8Array(size * size * 3);
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++)
        for (let c = 0; c < 3; c++)
          px[(y * size + x) * 3 + c] = Math.min(255, Math.floor(((x + y * (c + 1) + k * 40) % size) * (255 / size) * 0.8 + rnd() * 50));
    return px;
  });
}

/**
 * The largest difference between the bundle's probabilities and graft classify's (the backbone
 * as workers run it, then the head) on the same pixels.
 */
export async function compareWithClassifier(web: WebModel, folder: ModelFolder, files: ModelFiles, images = 3): Promise<number> {
  const spec = folder.card.backbone;
  const pixels = checkImages(spec.inputSize, images);
  const backbone = await backboneFromFiles({ spec, files });
  const head = await loadHeadModel(folder);
  const bundle = await loadWebModel(web);
  try {
    const expected = await predict(head, await backbone.embed(pixels), folder.card.input.dim);
    let max = 0;
    for (let i = 0; i < pixels.length; i++) {
      const x = tf.tensor4d(Float32Array.from(pixels[i]), [1, spec.inputSize, spec.inputSize, 3]);
      const y = bundle.predict(x) as tf.Tensor;
      const got = (await y.data()) as Float32Array;
      tf.dispose([x, y]);
      for (let c = 0; c < got.length; c++) max = Math.max(max, Math.abs(got[c] - expected[i][c]));
    }
    return max;
  } finally {
    backbone.dispose();
    head.dispose();
    bundle.dispose();
  }
}
