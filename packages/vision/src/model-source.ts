import { createHash, randomUUID } from 'node:crypto';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';
import { BackboneError } from './errors.js';

/** A TF.js model.json and its concatenated weights, as read from anywhere. */
export interface ModelFiles {
  /** The parsed model.json (modelTopology, weightsManifest, format...). */
  json: ModelJson;
  weightData: ArrayBuffer;
  /** Hex SHA-256 of weightData: what the backbone fingerprint is built on. */
  weightsSha256: string;
  /** Where the files came from (for logs; a local path or the URL). */
  origin: string;
}

export interface ModelJson {
  format?: string;
  modelTopology: Record<string, unknown>;
  weightsManifest: { paths: string[]; weights: unknown[] }[];
  [key: string]: unknown;
}

export interface FetchModelOptions {
  /** Folder for downloaded models. Default `$GRAFT_CACHE_DIR` resolved by the CLI, else ~/.cache/graft/models. */
  cacheDir?: string;
  /** Per-request timeout, ms. Default 30000. */
  timeoutMs?: number;
  /** Called with bytes downloaded so far and the file name. */
  onProgress?: (file: string, bytes: number) => void;
}

export function defaultCacheDir(): string {
  return join(homedir(), '.cache', 'graft', 'models');
}

/**
 * Reads a TF.js model from `embedded:nsfwjs/<model>`, `file://` or `http(s)://`.
 * HTTP downloads are cached on disk by URL, with each file's SHA-256 recorded and
 * checked on every later load; a mismatch discards the copy and downloads again.
 * @throws BackboneError naming the URL and what failed.
 */
export async function fetchModel(url: string, opts: FetchModelOptions = {}): Promise<ModelFiles> {
  try {
    if (url.startsWith('embedded:')) return await readEmbedded(url);
    if (url.startsWith('file:')) return await readLocal(fileURLToPath(url));
    if (/^https?:/.test(url)) return await readHttp(url, opts);
  } catch (err) {
    if (err instanceof BackboneError) throw err;
    throw new BackboneError(`cannot load model ${url}: ${(err as Error).message}`, { cause: err });
  }
  throw new BackboneError(`unsupported model URL ${url}: use file://, http(s):// or embedded:`);
}

function finish(json: ModelJson, shards: Uint8Array[], origin: string): ModelFiles {
  if (!json || typeof json !== 'object' || !json.modelTopology || !Array.isArray(json.weightsManifest)) {
    throw new BackboneError(`${origin} is not a TF.js model.json (no modelTopology/weightsManifest)`);
  }
  const all = Buffer.concat(shards);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength) as ArrayBuffer;
  return { json, weightData, weightsSha256: createHash('sha256').update(all).digest('hex'), origin };
}

function shardPaths(json: ModelJson): string[] {
  return json.weightsManifest.flatMap((g) => g.paths);
}

async function readLocal(path: string): Promise<ModelFiles> {
  const file = (await stat(path)).isDirectory() ? join(path, 'model.json') : path;
  const json = JSON.parse(await readFile(file, 'utf8')) as ModelJson;
  const dir = dirname(file);
  const shards = await Promise.all(shardPaths(json).map((p) => readFile(join(dir, p))));
  return finish(json, shards, file);
}

/**
 * nsfwjs ships its models as UMD modules: model.min.js exports the model JSON and each
 * shard module a base64 string. Only those files are read, in a bare VM context: none
 * of that library's code runs. JSON round-trip: objects from another realm confuse tfjs.
 */
async function readEmbedded(url: string): Promise<ModelFiles> {
  const m = /^embedded:nsfwjs\/([a-z0-9_]+)$/.exec(url);
  if (!m) throw new BackboneError(`unknown embedded model ${url}`);
  const require = createRequire(import.meta.url);
  const pkgDir = resolve(dirname(require.resolve('nsfwjs')), '..', '..');
  const dir = join(pkgDir, 'dist', 'models', m[1]);
  const load = async (name: string): Promise<unknown> => {
    const mod = { exports: {} as unknown };
    vm.runInNewContext(await readFile(join(dir, `${name}.min.js`), 'utf8'), { module: mod, exports: mod.exports }, { filename: name });
    return mod.exports;
  };
  const json = JSON.parse(JSON.stringify(await load('model'))) as ModelJson;
  const shards = await Promise.all(shardPaths(json).map(async (p) => Buffer.from((await load(p)) as string, 'base64')));
  return finish(json, shards, `${url} (${dir})`);
}

/** TF Hub handles (tfhub.dev, kaggle.com) serve files with ?tfjs-format=file. */
function hubUrls(url: string): { modelUrl: string; fileUrl: (p: string) => string } {
  const isHub = /^https?:\/\/(tfhub\.dev|www\.kaggle\.com)\//.test(url) && !/\.json(\?|$)/.test(url);
  if (isHub) {
    const base = url.replace(/\/+$/, '');
    return { modelUrl: `${base}/model.json?tfjs-format=file`, fileUrl: (p) => `${base}/${p}?tfjs-format=file` };
  }
  const base = url.slice(0, url.lastIndexOf('/') + 1);
  return { modelUrl: url, fileUrl: (p) => new URL(p, base).toString() };
}

interface CacheIndex {
  url: string;
  files: Record<string, string>;
}

async function readHttp(url: string, opts: FetchModelOptions): Promise<ModelFiles> {
  const dir = join(opts.cacheDir ?? defaultCacheDir(), createHash('sha256').update(url).digest('hex').slice(0, 24));
  const cached = await readCache(dir);
  if (cached) return { ...cached, origin: url };

  const { modelUrl, fileUrl } = hubUrls(url);
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const jsonBytes = await download(modelUrl, timeoutMs, 'model.json', opts.onProgress);
  let json: ModelJson;
  try {
    json = JSON.parse(Buffer.from(jsonBytes).toString('utf8')) as ModelJson;
  } catch (err) {
    throw new BackboneError(`${modelUrl} did not return JSON: ${(err as Error).message}`, { cause: err });
  }
  const paths = shardPaths(json);
  const shards = await Promise.all(paths.map((p) => download(fileUrl(p), timeoutMs, p, opts.onProgress)));
  const files = finish(json, shards, url);

  // Write to a temp folder of our own (loaders in other processes or containers may share the
  // volume, with the same pid), then rename: a crash never leaves a half-written cache entry.
  const tmp = `${dir}.tmp-${randomUUID()}`;
  await mkdir(tmp, { recursive: true });
  const index: CacheIndex = { url, files: { 'model.json': sha256(jsonBytes) } };
  await writeFile(join(tmp, 'model.json'), jsonBytes);
  for (let i = 0; i < paths.length; i++) {
    const name = safeName(paths[i]);
    await writeFile(join(tmp, name), shards[i]);
    index.files[name] = sha256(shards[i]);
  }
  await writeFile(join(tmp, 'index.json'), JSON.stringify(index, null, 2));
  try {
    await rename(tmp, dir);
  } catch (err) {
    // Another loader finished first: its copy is as good as ours.
    if (!['ENOTEMPTY', 'EEXIST'].includes((err as NodeJS.ErrnoException).code ?? '')) throw err;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return files;
}

/** A verified cache entry, or undefined (and the entry removed) when missing or corrupt. */
async function readCache(dir: string): Promise<Omit<ModelFiles, 'origin'> | undefined> {
  let index: CacheIndex;
  try {
    index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as CacheIndex;
  } catch {
    return undefined;
  }
  try {
    const jsonBytes = await readFile(join(dir, 'model.json'));
    if (sha256(jsonBytes) !== index.files['model.json']) throw new Error('model.json hash mismatch');
    const json = JSON.parse(jsonBytes.toString('utf8')) as ModelJson;
    const shards = await Promise.all(
      shardPaths(json).map(async (p) => {
        const name = safeName(p);
        const bytes = await readFile(join(dir, name));
        if (sha256(bytes) !== index.files[name]) throw new Error(`${name} hash mismatch`);
        return bytes;
      }),
    );
    return finish(json, shards, dir);
  } catch {
    await rm(dir, { recursive: true, force: true });
    return undefined;
  }
}

async function download(url: string, timeoutMs: number, label: string, onProgress?: FetchModelOptions['onProgress']): Promise<Uint8Array> {
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), redirect: 'follow' });
  } catch (err) {
    const cause = (err as { cause?: Error }).cause;
    throw new BackboneError(`cannot download ${url}: ${cause?.message ?? (err as Error).message}`, { cause: err });
  }
  if (!res.ok) throw new BackboneError(`cannot download ${url}: HTTP ${res.status} ${res.statusText}`);
  const bytes = new Uint8Array(await res.arrayBuffer());
  onProgress?.(label, bytes.byteLength);
  return bytes;
}

function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

function safeName(p: string): string {
  return p.replace(/[^A-Za-z0-9._-]/g, '_');
}
