import type { DenseSpec } from '@graft/vision';
import { loadHeadModel, type ModelFolder } from './model.js';

/** Thrown when a head has a layer no exported graph carries (only dense ReLU and softmax layers do). */
export class HeadLayerError extends Error {
  override name = 'HeadLayerError';
}

/**
 * A model folder's head as plain dense layers (a hidden ReLU layer when it has one, then the softmax),
 * standardisation already folded into the weights: what the browser bundle and model.onnx append
 * to their backbone. Layers without weights (dropout) do nothing once trained and are left out.
 * @throws HeadLayerError for a layer of another activation.
 */
export async function headLayers(folder: ModelFolder): Promise<DenseSpec[]> {
  const head = await loadHeadModel(folder);
  try {
    const out: DenseSpec[] = [];
    for (const layer of head.layers) {
      const weights = layer.getWeights();
      if (weights.length === 0) continue;
      const [k, b] = weights;
      const activation = (layer.getConfig() as { activation?: string }).activation;
      if (activation !== 'relu' && activation !== 'softmax')
        throw new HeadLayerError(`head layer ${layer.name} has activation ${activation}: exported graphs carry relu and softmax`);
      out.push({ kernel: (await k.data()) as Float32Array, bias: (await b.data()) as Float32Array, inputs: k.shape[0]!, units: k.shape[1]!, activation });
    }
    return out;
  } finally {
    head.dispose();
  }
}
