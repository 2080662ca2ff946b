import { createHash, randomUUID } from 'node:crypto';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';
import { gunzipSync } from 'node:zlib';
import { BackboneError } from './errors.js';
import { graphDefModel, type GraphSource } from './graphdef.js';

/** A TF.js model.json and its concatenated weights, as read from anywhere. */
export interface ModelFiles {
  /** The parsed model.json (modelTopology, weightsManifest, format...). */
  json: ModelJson;
  weightData: ArrayBuffer;
  /** Hex SHA-256 of weightData: what the backbone fingerprint is built on. */
  weightsSha256: string;
  /** Where the files came from (for logs; a local path or the URL). */
  origin: string;
  /** Set when the model was converted from a TensorFlow GraphDef (.pb): how. */
  graph?: GraphSource;
}

export interface ModelJson {
  format?: string;
  modelTopology: Record<string, unknown>;
  weightsManifest: { paths: string[]; weights: unknown[] }[];
  [key: string]: unknown;
}

/**
 * Where models may come from, and how big they may be. Whoever loads a model a stranger named
 * (the coordinator, reading a manifest) narrows it; a user loading their own model need not.
 */
export interface FetchModelOptions {
  /** Folder for downloaded models. Default ~/.cache/graft/models (the CLI also reads $GRAFT_CACHE_DIR). */
  cacheDir?: string;
  /** Per-request timeout, ms. Default 30000. */
  timeoutMs?: number;
  /** Called with bytes downloaded so far and the file name. */
  onProgress?: (file: string, bytes: number) => void;
  /** Whether `file://` models (any readable path on this machine) may be loaded. Default true. */
  allowFiles?: boolean;
  /** Largest model accepted (model.json plus weights), bytes. Default 1 GiB. */
  maxBytes?: number;
  /** The weights must hash to this (a catalogue entry's pinned digest). */
  expectWeightsSha256?: string;
  /** For a TensorFlow GraphDef (.pb): where to cut it and, if it does not say, its input size. */
  graph?: { bottleneck?: string; inputSize?: number; inputNode?: string };
}

const DEFAULT_MAX_MODEL_BYTES = 1024 ** 3;
/** Redirects followed per request, http(s) to http(s) only. */
const MAX_REDIRECTS = 5;

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
    let files: ModelFiles | undefined;
    const graphDef = graphDefSource(url);
    if (graphDef) files = await readGraphDefModel(url, graphDef, opts);
    else if (url.startsWith('embedded:')) files = await readEmbedded(url);
    else if (url.startsWith('file:')) {
      refuseUnlessFilesAllowed(url, opts);
      files = await readLocal(fileURLToPath(url), opts.maxBytes ?? DEFAULT_MAX_MODEL_BYTES);
    } else if (/^https?:/.test(url)) files = await readHttp(url, opts);
    if (files) {
      if (opts.expectWeightsSha256 && files.weightsSha256 !== opts.expectWeightsSha256) {
        throw new BackboneError(`model ${url} has weights with SHA-256 ${files.weightsSha256}, not the pinned ${opts.expectWeightsSha256}: refusing it`);
      }
      return files;
    }
  } catch (err) {
    if (err instanceof BackboneError) throw err;
    throw new BackboneError(`cannot load model ${url}: ${(err as Error).message}`, { cause: err });
  }
  throw new BackboneError(`unsupported model URL ${url}: use file://, http(s):// or embedded:`);
}

/** @throws BackboneError when this process may not read local model files (a manifest named one). */
function refuseUnlessFilesAllowed(url: string, opts: FetchModelOptions): void {
  if (opts.allowFiles === false) throw new BackboneError(`model ${url} is a local file, and this process loads local models only when its operator allows it (graft coordinator --allow-model-files)`);
}

/**
 * A TensorFlow GraphDef source: a `.pb`, or a `.pb` inside a `.zip` or `.tgz` archive, named
 * after `#` (`…/inception_dec_2015.zip#tensorflow_inception_graph.pb`). Undefined for TF.js models.
 */
export function graphDefSource(url: string): { fileUrl: string; member?: string } | undefined {
  const hash = url.indexOf('#');
  const fileUrl = hash < 0 ? url : url.slice(0, hash);
  const member = hash < 0 ? undefined : url.slice(hash + 1);
  const path = fileUrl.replace(/[?].*$/, '');
  if (/\.pb$/i.test(path)) return { fileUrl };
  if (/\.(zip|tgz|tar\.gz)$/i.test(path)) {
    if (!member) throw new BackboneError(`${url} is an archive: name the .pb inside it after '#' (e.g. ${fileUrl}#model.pb)`);
    return { fileUrl, member };
  }
  return undefined;
}

/** The bytes of a GraphDef source (the .pb, out of its archive if need be), under the model policy. */
export async function readGraphDefBytes(url: string, opts: FetchModelOptions = {}): Promise<Uint8Array> {
  const src = graphDefSource(url);
  if (!src) throw new BackboneError(`${url} is not a .pb (or an archive holding one)`);
  const max = opts.maxBytes ?? DEFAULT_MAX_MODEL_BYTES;
  let bytes: Uint8Array;
  if (src.fileUrl.startsWith('file:')) {
    refuseUnlessFilesAllowed(url, opts);
    const path = fileURLToPath(src.fileUrl);
    const size = (await stat(path)).size;
    if (size > max) throw new BackboneError(`model ${path} has ${size} bytes, over the ${max}-byte limit`);
    bytes = await readFile(path);
  } else if (/^https?:/.test(src.fileUrl)) {
    bytes = (await download(src.fileUrl, opts.timeoutMs ?? 120_000, src.fileUrl.split('/').pop() ?? 'model', { left: max, max }, opts.onProgress)).bytes;
  } else throw new BackboneError(`unsupported model URL ${url}: a .pb is read from file:// or http(s)://`);
  return src.member ? extractMember(bytes, src.member, src.fileUrl, max) : bytes;
}

/** One file out of a .zip or .tgz, by name (or by its last path part). */
async function extractMember(archive: Uint8Array, member: string, origin: string, max: number): Promise<Uint8Array> {
  const matches = (name: string) => name === member || name.replace(/^\.\//, '') === member || name.endsWith(`/${member}`);
  // Archive readers load only when an archive is read (most processes never do).
  if (archive[0] === 0x50 && archive[1] === 0x4b) {
    const { unzipSync } = await import('fflate');
    const files = unzipSync(archive, { filter: (f) => matches(f.name) && f.originalSize <= max });
    const found = Object.values(files)[0];
    if (!found) throw new BackboneError(`${origin} has no ${member} (or it is over the ${max}-byte limit)`);
    return found;
  }
  if (archive[0] === 0x1f && archive[1] === 0x8b) {
    const tar = gunzipSync(archive, { maxOutputLength: max + 64 * 1024 * 1024 });
    const { extract } = await import('tar-stream');
    const ex = extract();
    const done = new Promise<Uint8Array | undefined>((resolve, reject) => {
      let found: Uint8Array | undefined;
      ex.on('entry', (header, stream, next) => {
        const parts: Buffer[] = [];
        const want = !found && header.type === 'file' && matches(header.name);
        stream.on('data', (c: unknown) => want && parts.push(c as Buffer));
        stream.on('end', () => {
          if (want) found = Buffer.concat(parts);
          next();
        });
        stream.resume();
      });
      ex.on('finish', () => resolve(found));
      ex.on('error', reject);
    });
    ex.end(tar);
    const found = await done;
    if (!found) throw new BackboneError(`${origin} has no ${member}`);
    return found;
  }
  throw new BackboneError(`${origin} is neither a .zip nor a .tgz`);
}

/**
 * A GraphDef converted to a TF.js graph model. Downloads are cached converted (by source URL and
 * cut), verified like any cached model; a local .pb is read and converted on each load.
 */
async function readGraphDefModel(url: string, src: { fileUrl: string }, opts: FetchModelOptions): Promise<ModelFiles> {
  const cut = { bottleneck: opts.graph?.bottleneck || undefined, inputSize: opts.graph?.inputSize || undefined, inputNode: opts.graph?.inputNode || undefined };
  const remote = /^https?:/.test(src.fileUrl);
  const dir = join(opts.cacheDir ?? defaultCacheDir(), createHash('sha256').update(`${url}|${cut.bottleneck ?? ''}|${cut.inputSize ?? ''}|${cut.inputNode ?? ''}`).digest('hex').slice(0, 24));
  if (remote) {
    const cached = await readCache(dir);
    if (cached) return { ...cached, origin: url, graph: cached.json.graftGraphSource as GraphSource };
  }
  const files = graphDefModel(await readGraphDefBytes(url, opts), { ...cut, origin: url });
  if (remote) {
    const { modelJson, weights } = modelBundle(files);
    await writeCache(dir, url, [['model.json', modelJson], ['weights.bin', weights]]);
  }
  return files;
}

function finish(json: ModelJson, shards: Uint8Array[], origin: string): ModelFiles {
  if (!json || typeof json !== 'object' || !json.modelTopology || !Array.isArray(json.weightsManifest)) {
    throw new BackboneError(`${origin} is not a TF.js model.json (no modelTopology/weightsManifest)`);
  }
  const all = Buffer.concat(shards);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength) as ArrayBuffer;
  return { json, weightData, weightsSha256: createHash('sha256').update(all).digest('hex'), origin };
}

/**
 * The weight files a model.json names, each checked to be a plain relative name inside the
 * model's folder: a model.json cannot make a loader read or fetch anything else.
 * @throws BackboneError naming the bad path.
 */
function shardPaths(json: ModelJson): string[] {
  const paths = json.weightsManifest.flatMap((g) => g.paths);
  for (const p of paths) {
    if (typeof p !== 'string' || !p || p.startsWith('/') || p.includes('\\') || /^[a-z][a-z0-9+.-]*:/i.test(p) || p.split('/').some((seg) => seg === '..' || seg === '.')) {
      throw new BackboneError(`model.json names a weights file ${JSON.stringify(p)} outside its folder: refusing it`);
    }
  }
  return paths;
}

async function readLocal(path: string, maxBytes: number): Promise<ModelFiles> {
  const file = (await stat(path)).isDirectory() ? join(path, 'model.json') : path;
  const json = JSON.parse(await readFile(file, 'utf8')) as ModelJson;
  const dir = dirname(file);
  const paths = shardPaths(json);
  let total = 0;
  for (const p of paths) total += (await stat(join(dir, p))).size;
  if (total > maxBytes) throw new BackboneError(`model ${file} has ${total} bytes of weights, over the ${maxBytes}-byte limit`);
  const shards = await Promise.all(paths.map((p) => readFile(join(dir, p))));
  return finish(json, shards, file);
}

/**
 * nsfwjs ships its models as UMD modules: model.min.js exports the model JSON and each
 * shard module a base64 string. Only those files are read, in a bare VM context: none
 * of that library's code runs. JSON round-trip: objects from another realm confuse tfjs.
 */
async function readEmbedded(url: string): Promise<ModelFiles> {
  const own = /^embedded:([a-z0-9_]+(\.[a-z0-9_]+)*)$/i.exec(url);
  if (own) {
    // Models shipped in this package (packages/vision/models/<name>/), plain TF.js files.
    const dir = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'models', own[1]);
    const files = await readLocal(dir, DEFAULT_MAX_MODEL_BYTES);
    return { ...files, origin: `${url} (${dir})` };
  }
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
  const isHub = /^https?:\/\/(tfhub\.dev|(www\.)?kaggle\.com)\//.test(url) && !/\.json(\?|$)/.test(url);
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
  const budget = { left: opts.maxBytes ?? DEFAULT_MAX_MODEL_BYTES, max: opts.maxBytes ?? DEFAULT_MAX_MODEL_BYTES };
  const { bytes: jsonBytes, url: finalUrl } = await download(modelUrl, timeoutMs, 'model.json', budget, opts.onProgress);
  // Weights are next to where model.json really is, after redirects.
  // (TF Hub redirects to Kaggle: the query, ?tfjs-format=file, goes along.)
  const shardUrl = finalUrl === modelUrl ? fileUrl : (p: string) => Object.assign(new URL(p, finalUrl), { search: new URL(finalUrl).search }).toString();
  let json: ModelJson;
  try {
    json = JSON.parse(Buffer.from(jsonBytes).toString('utf8')) as ModelJson;
  } catch (err) {
    throw new BackboneError(`${modelUrl} did not return JSON: ${(err as Error).message}`, { cause: err });
  }
  const paths = shardPaths(json);
  const shards: Uint8Array[] = [];
  for (const p of paths) shards.push((await download(shardUrl(p), timeoutMs, p, budget, opts.onProgress)).bytes);
  const files = finish(json, shards, url);

  await writeCache(dir, url, [['model.json', jsonBytes], ...paths.map((p, i) => [safeName(p), shards[i]] as [string, Uint8Array])]);
  return files;
}

/**
 * Writes a cache entry (files and an index of their hashes) through a temp folder of our own
 * (loaders in other processes or containers may share the volume, with the same pid), then a
 * rename: a crash never leaves a half-written entry.
 */
async function writeCache(dir: string, url: string, files: [string, Uint8Array][]): Promise<void> {
  const tmp = `${dir}.tmp-${randomUUID()}`;
  await mkdir(tmp, { recursive: true });
  const index: CacheIndex = { url, files: {} };
  for (const [name, bytes] of files) {
    await writeFile(join(tmp, name), bytes);
    index.files[name] = sha256(bytes);
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

/**
 * Downloads one file: redirects followed by hand (http and https only, at most
 * MAX_REDIRECTS), the size checked against what is left of the model's byte budget while it
 * streams in (the Content-Length first, when the server gives one).
 */
async function download(url: string, timeoutMs: number, label: string, budget: { left: number; max: number }, onProgress?: FetchModelOptions['onProgress']): Promise<{ bytes: Uint8Array; url: string }> {
  let res: Response | undefined;
  let at = url;
  for (let hop = 0; ; hop++) {
    try {
      res = await fetch(at, { signal: AbortSignal.timeout(timeoutMs), redirect: 'manual' });
    } catch (err) {
      const cause = (err as { cause?: Error }).cause;
      throw new BackboneError(`cannot download ${at}: ${cause?.message ?? (err as Error).message}`, { cause: err });
    }
    if (res.status < 300 || res.status >= 400) break;
    const next = res.headers.get('location');
    await res.body?.cancel();
    if (!next) throw new BackboneError(`cannot download ${at}: HTTP ${res.status} without a Location`);
    const target = new URL(next, at);
    if (target.protocol !== 'http:' && target.protocol !== 'https:') throw new BackboneError(`cannot download ${url}: it redirects to ${target.protocol} (only http and https are followed)`);
    if (hop >= MAX_REDIRECTS) throw new BackboneError(`cannot download ${url}: more than ${MAX_REDIRECTS} redirects`);
    at = target.toString();
  }
  if (!res.ok) throw new BackboneError(`cannot download ${at}: HTTP ${res.status} ${res.statusText}`);
  const tooBig = () => new BackboneError(`cannot download ${url}: the model is over the ${budget.max}-byte limit`);
  const length = Number(res.headers.get('content-length') ?? NaN);
  if (length > budget.left) {
    await res.body?.cancel();
    throw tooBig();
  }
  const parts: Uint8Array[] = [];
  let got = 0;
  for await (const chunk of res.body ?? []) {
    got += (chunk as Uint8Array).byteLength;
    if (got > budget.left) {
      await res.body?.cancel().catch(() => undefined);
      throw tooBig();
    }
    parts.push(chunk as Uint8Array);
  }
  budget.left -= got;
  const bytes = new Uint8Array(Buffer.concat(parts));
  onProgress?.(label, bytes.byteLength);
  return { bytes, url: at };
}

function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

function safeName(p: string): string {
  return p.replace(/[^A-Za-z0-9._-]/g, '_');
}

/**
 * A model as two blobs: model.json (naming one weights file, weights.bin) and the weights,
 * concatenated in manifest order. How a coordinator hands a model to its workers through the
 * model store; {@link filesFromBundle} reads it back with the same weights hash.
 */
export function modelBundle(files: ModelFiles): { modelJson: Uint8Array; weights: Uint8Array } {
  const json = { ...files.json, weightsManifest: [{ paths: ['weights.bin'], weights: files.json.weightsManifest.flatMap((g) => g.weights) }] };
  return { modelJson: new TextEncoder().encode(JSON.stringify(json)), weights: new Uint8Array(files.weightData) };
}

/** The inverse of {@link modelBundle}. @throws BackboneError when the blobs are not a model. */
export function filesFromBundle(modelJson: Uint8Array, weights: Uint8Array, origin: string): ModelFiles {
  let json: ModelJson;
  try {
    json = JSON.parse(new TextDecoder().decode(modelJson)) as ModelJson;
  } catch (err) {
    throw new BackboneError(`${origin} is not a model.json: ${(err as Error).message}`, { cause: err });
  }
  return finish(json, [weights], origin);
}
