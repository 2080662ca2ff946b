import { Worker } from 'node:worker_threads';

/*
 * An ONNX Runtime session run from the event loop's side: the session lives on a worker thread
 * (onnx-thread.ts), each run a message there and back, inputs moved (not copied) to it.
 */

/** Where and how a session runs. */
export interface OnnxSessionOptions {
  /** Execution provider: ONNX Runtime's CPU kernels, or CUDA. Default cpu. */
  provider?: 'cpu' | 'cuda';
  /** The CUDA device (an ordinal as CUDA counts them). Default 0. */
  deviceId?: number;
  /** Intra-op threads of the session. Default 1. */
  threads?: number;
  /** Input and output names. Defaults: the graph's first input and output. */
  input?: string;
  output?: string;
  /** The input's element type. Default uint8 (pixels). */
  inputType?: 'uint8' | 'float32';
}

/** A ready session: run it, close it. */
export interface OnnxSession {
  readonly provider: 'cpu' | 'cuda';
  /** Runs one batch; the input's buffer is moved to the session's thread (unusable afterwards). */
  run(input: Uint8Array | Float32Array, dims: number[]): Promise<{ data: Float32Array; dims: number[] }>;
  /** Runs one batch and says the dims of every output of the graph (graft inspect). */
  shapes(input: Uint8Array | Float32Array, dims: number[]): Promise<Record<string, number[]>>;
  /** Ends the session and its thread. Idempotent. */
  close(): Promise<void>;
}

/** Thrown when ONNX Runtime cannot load a model or run it. */
export class OnnxRuntimeError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'OnnxRuntimeError';
  }
}

interface Reply {
  id: number;
  output?: ArrayBuffer;
  dims?: number[];
  shapes?: Record<string, number[]>;
  error?: string;
}

/**
 * Opens a session on its own thread.
 * @throws OnnxRuntimeError when onnxruntime-node is missing or the model does not load.
 */
export async function openOnnxSession(model: Uint8Array, o: OnnxSessionOptions = {}): Promise<OnnxSession> {
  const thread = new Worker(new URL('./onnx-thread.js', import.meta.url), {
    workerData: {
      model,
      provider: o.provider ?? 'cpu',
      deviceId: o.deviceId ?? 0,
      threads: o.threads ?? 1,
      input: o.input ?? '',
      output: o.output ?? '',
      inputType: o.inputType ?? 'uint8',
    },
  });
  const ready = await new Promise<{ ready: boolean; error?: string }>((resolve) => {
    thread.once('message', resolve);
    thread.once('error', (err) => resolve({ ready: false, error: err.message }));
  });
  if (!ready.ready) {
    await thread.terminate();
    throw new OnnxRuntimeError(`ONNX Runtime cannot load the model: ${ready.error}`);
  }
  return new ThreadSession(thread, o.provider ?? 'cpu');
}

class ThreadSession implements OnnxSession {
  private next = 1;
  private readonly waiting = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  private closing?: Promise<void>;
  private failed?: Error;

  constructor(
    private readonly thread: Worker,
    readonly provider: 'cpu' | 'cuda',
  ) {
    thread.on('message', (r: Reply) => {
      const w = this.waiting.get(r.id);
      if (!w) return;
      this.waiting.delete(r.id);
      if (this.waiting.size === 0) thread.unref();
      if (r.error !== undefined) w.reject(new OnnxRuntimeError(`ONNX Runtime failed: ${r.error}`));
      else w.resolve(r);
    });
    // A thread that dies fails what it holds and every later run, never hangs them.
    const fail = (err: Error) => {
      this.failed = new OnnxRuntimeError(`the ONNX Runtime thread stopped: ${err.message}`, { cause: err });
      for (const w of this.waiting.values()) w.reject(this.failed);
      this.waiting.clear();
    };
    thread.on('error', fail);
    thread.on('exit', (code) => fail(new Error(`exit code ${code}`)));
    // An idle session keeps no process alive; one with runs in flight does.
    thread.unref();
  }

  async run(input: Uint8Array | Float32Array, dims: number[]): Promise<{ data: Float32Array; dims: number[] }> {
    const r = await this.send(input, dims, false);
    return { data: new Float32Array(r.output!), dims: r.dims! };
  }

  async shapes(input: Uint8Array | Float32Array, dims: number[]): Promise<Record<string, number[]>> {
    return (await this.send(input, dims, true)).shapes!;
  }

  private send(input: Uint8Array | Float32Array, dims: number[], shapesOnly: boolean): Promise<Reply> {
    if (this.failed) return Promise.reject(this.failed);
    if (this.closing) return Promise.reject(new OnnxRuntimeError('the session is closed'));
    const id = this.next++;
    // A view into a larger buffer is copied; a whole buffer moves.
    const whole = input.byteOffset === 0 && input.byteLength === input.buffer.byteLength ? input : input.slice();
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.thread.ref();
      this.thread.postMessage({ id, input: whole.buffer, dims, shapesOnly }, [whole.buffer as ArrayBuffer]);
    });
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      if (!this.failed) this.thread.postMessage('close');
      await this.thread.terminate();
    })();
    return this.closing;
  }
}
