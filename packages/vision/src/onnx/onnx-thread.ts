import { parentPort, workerData } from 'node:worker_threads';
import type { InferenceSession as Session } from 'onnxruntime-node';

/*
 * One ONNX Runtime session on its own thread: `run` is a synchronous native call that holds its
 * thread for the whole inference, so it must not be the event loop's (fetches, decodes and lease
 * renewals go on meanwhile). Messages: {id, input: ArrayBuffer, dims} in, {id, output, dims} or
 * {id, error} out.
 */

interface Setup {
  model: Uint8Array;
  provider: 'cpu' | 'cuda';
  deviceId: number;
  threads: number;
  input: string;
  output: string;
  inputType: 'uint8' | 'float32';
}

interface Run {
  id: number;
  input: ArrayBuffer;
  dims: number[];
  /** Reply with the dims of every output instead of the one output's values. */
  shapesOnly?: boolean;
}

const setup = workerData as Setup;
const ort = await import('onnxruntime-node');
const port = parentPort!;
let session: Session;
let input = setup.input;
let output = setup.output;
try {
  session = await ort.InferenceSession.create(setup.model, {
    // Under CUDA, ONNX Runtime places what CUDA cannot run on its CPU kernels by itself.
    executionProviders: setup.provider === 'cuda' ? [{ name: 'cuda', deviceId: setup.deviceId }] : ['cpu'],
    intraOpNumThreads: setup.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    // Spinning threads wait for work by burning their core: measured slower whenever another
    // process (a second worker, sharp's decoders) wants that core.
    extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
    logSeverityLevel: 3,
  });
  input ||= session.inputNames[0];
  output ||= session.outputNames[0];
  port.postMessage({ ready: true, input, output });
} catch (err) {
  port.postMessage({ ready: false, error: (err as Error).message });
  process.exit(0);
}

port.on('message', (m: Run | 'close') => {
  if (m === 'close') {
    void session.release().finally(() => port.close());
    return;
  }
  void (async () => {
    try {
      const data = setup.inputType === 'uint8' ? new Uint8Array(m.input) : new Float32Array(m.input);
      const out = await session.run({ [input]: new ort.Tensor(setup.inputType, data, m.dims) });
      if (m.shapesOnly) {
        port.postMessage({ id: m.id, shapes: Object.fromEntries(Object.entries(out).map(([k, v]) => [k, [...v.dims]])) });
        return;
      }
      const y = out[output];
      const values = y.data as Float32Array;
      const copy = values.slice(); // the session owns its output buffer
      port.postMessage({ id: m.id, output: copy.buffer, dims: y.dims }, [copy.buffer]);
    } catch (err) {
      port.postMessage({ id: m.id, error: (err as Error).message });
    }
  })();
});
