import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { defaultCacheDir } from '../model-cache.js';

/*
 * The disk cache of backbones converted to ONNX (the model cache's onnx/ folder): per fingerprint,
 * converter version and ONNX Runtime version, the converted file and the verdict of its check
 * against TF.js (kept on ONNX Runtime with the difference measured, or not and why). This module is
 * its only reader and writer.
 */

/** Bumped whenever the converter's output changes: older cached conversions are then made again. */
export const CONVERTER_VERSION = 1;

export interface ConversionCacheOptions {
  /** Folder of the model cache; conversions go to its onnx/ subfolder. Default ~/.cache/graft/models. */
  cacheDir?: string;
}

const ORT_VERSION = (() => {
  try {
    return (createRequire(import.meta.url)('onnxruntime-node/package.json') as { version: string }).version;
  } catch {
    return 'none';
  }
})();

/** What the cache says of a fingerprint: kept on ONNX Runtime (the file's hash, the difference), or not (why). */
export interface Verdict {
  onnx: boolean;
  reason?: string;
  sha256?: string;
  maxRelativeDiff?: number;
  dim?: number;
}

function cachePaths(fingerprint: string, o: ConversionCacheOptions): { dir: string; model: string; verdict: string } {
  const dir = join(o.cacheDir ?? defaultCacheDir(), 'onnx');
  const base = `${fingerprint}-c${CONVERTER_VERSION}-ort${ORT_VERSION}`;
  return { dir, model: join(dir, `${base}.onnx`), verdict: join(dir, `${base}.json`) };
}

/** A cached conversion that still reads back with its recorded hash, or undefined. */
export async function cachedConversion(fingerprint: string, o: ConversionCacheOptions): Promise<{ verdict: Verdict; model?: Uint8Array } | undefined> {
  const p = cachePaths(fingerprint, o);
  try {
    const verdict = JSON.parse(await readFile(p.verdict, 'utf8')) as Verdict;
    if (!verdict.onnx) return { verdict };
    const model = await readFile(p.model);
    if (createHash('sha256').update(model).digest('hex') !== verdict.sha256) return undefined;
    return { verdict, model };
  } catch {
    return undefined; // none, or unreadable: convert again
  }
}

export async function rememberConversion(fingerprint: string, verdict: Verdict, model: Uint8Array | undefined, o: ConversionCacheOptions): Promise<void> {
  const p = cachePaths(fingerprint, o);
  try {
    await mkdir(p.dir, { recursive: true });
    // Written whole then renamed: two workers converting at once never read half a file.
    const tmp = `.${process.pid}-${Date.now()}`;
    if (model) {
      await writeFile(p.model + tmp, model);
      await rename(p.model + tmp, p.model);
    }
    await writeFile(p.verdict + tmp, JSON.stringify(verdict));
    await rename(p.verdict + tmp, p.verdict);
  } catch {
    // A cache that cannot be written costs a conversion next time, nothing else.
  }
}
