import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';

/**
 * Writes a tiny TF.js layers model (size x size x 3 input, a 1x1 convolution named "feat",
 * global average pooling: 3-d "vectors" that are the mean colour) as model.json + w.bin.
 * Extraction with it costs nothing, for tests about the bus rather than the backbone.
 */
export async function writeTinyModel(dir: string, size = 4): Promise<string> {
  const input = tf.input({ shape: [size, size, 3] });
  const feat = tf.layers.conv2d({ filters: 3, kernelSize: 1, useBias: false, name: 'feat' }).apply(input) as tf.SymbolicTensor;
  const out = tf.layers.globalAveragePooling2d({ name: 'pool' }).apply(feat) as tf.SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: out });
  model.getLayer('feat').setWeights([tf.eye(3).reshape([1, 1, 3, 3])]);
  return saveModel(model, dir);
}

/**
 * Writes a small convolutional TF.js model that costs a few milliseconds per image on the
 * wasm backend: enough that tasks take real time (kills land mid-batch) without the
 * seconds per image of InceptionV3.
 */
export async function writeConvModel(dir: string, opts: { size?: number; filters?: number; layers?: number } = {}): Promise<string> {
  const size = opts.size ?? 64;
  const input = tf.input({ shape: [size, size, 3] });
  let x = input as tf.SymbolicTensor;
  for (let i = 0; i < (opts.layers ?? 3); i++) {
    x = tf.layers
      .conv2d({
        filters: opts.filters ?? 32,
        kernelSize: 3,
        padding: 'same',
        activation: 'relu',
        name: `conv${i}`,
        kernelInitializer: tf.initializers.glorotUniform({ seed: i + 1 }),
      })
      .apply(x) as tf.SymbolicTensor;
  }
  const out = tf.layers.globalAveragePooling2d({ name: 'pool' }).apply(x) as tf.SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: out });
  return saveModel(model, dir);
}

/** Writes a layers model as model.json + w.bin in dir and disposes it; returns its file:// URL. */
async function saveModel(model: tf.LayersModel, dir: string): Promise<string> {
  await model.save(
    tf.io.withSaveHandler(async (a) => {
      await writeFile(
        join(dir, 'model.json'),
        JSON.stringify({ format: 'layers-model', modelTopology: a.modelTopology, weightsManifest: [{ paths: ['w.bin'], weights: a.weightSpecs }] }),
      );
      await writeFile(join(dir, 'w.bin'), Buffer.from(a.weightData as ArrayBuffer));
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  model.dispose();
  return `file://${join(dir, 'model.json')}`;
}
