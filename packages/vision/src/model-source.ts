import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';
import { extractMember } from './archives.js';
import { BackboneError } from './errors.js';
import { graphDefModel, type GraphSource } from './graphdef.js';
import { FetchFailure, fetchCapped, hideUrlCredentials, redactUrl } from './http-fetch.js';
import { defaultCacheDir, readCache, safeName, writeCache } from './model-cache.js';
import { isOnnxModel, modelBundle, modelFilesFrom, onnxFiles, shardPaths, type ModelFiles, type ModelJson } from './model-files.js';
import { DEFAULT_MAX_MODEL_BYTES, USER_MODEL_POLICY, maxModelBytes, refuseUnlessFilesAllowed, type FetchModelOptions } from './model-policy.js';
import { fileUpload, readUploadedBlob, readUploadedModel, tfjsUpload, type ModelUpload } from './model-upload.js';

/*
 * Where a model's files come from: the models shipped inside graft, local files, HTTP (TF Hub and
 * Kaggle handles too) and TensorFlow GraphDefs, under the trust policy of model-policy.ts.
 */

export type { FetchModelOptions } from './model-policy.js';
export type { ModelFiles, ModelJson } from './model-files.js';
export { defaultCacheDir } from './model-cache.js';

/**
 * Reads a TF.js model from `embedded:nsfwjs/<model>`, `file://` or `http(s)://`.
 * HTTP downloads are cached on disk by URL, with each file's SHA-256 recorded and
 * checked on every later load; a mismatch discards the copy and downloads again.
 * @throws BackboneError naming the URL and what failed.
 */
export async function fetchModel(url: string, opts: FetchModelOptions = {}): Promise<ModelFiles> {
  try {
    let files: ModelFiles | undefined;
    // An upload stands for the publisher's own file; it never stands in for a URL (whose cache it would fill).
    if (opts.upload && !url.startsWith('file:')) throw new BackboneError(`model ${redactUrl(url)}: an upload stands for a local file:// model only`);
    const graphDef = graphDefSource(url);
    if (graphDef) files = await readGraphDefModel(url, graphDef, opts);
    else if (isOnnxUrl(url)) files = await readOnnxModel(url, opts);
    else if (opts.upload) files = await readUploadedModel(opts.upload, opts.readUpload, maxModelBytes(opts), `${url} (uploaded, ${opts.upload})`);
    else if (url.startsWith('embedded:')) files = await readEmbedded(url);
    else if (url.startsWith('file:')) {
      refuseUnlessFilesAllowed(url, opts);
      files = await readLocal(fileURLToPath(url), maxModelBytes(opts));
    } else if (/^https?:/.test(url)) files = await readHttp(url, opts);
    if (files) {
      if (opts.expectWeightsSha256 && files.weightsSha256 !== opts.expectWeightsSha256) {
        throw new BackboneError(`model ${url} has weights with SHA-256 ${files.weightsSha256}, not the pinned ${opts.expectWeightsSha256}: refusing it`);
      }
      return files;
    }
  } catch (err) {
    // Whatever failed, the message never shows a URL's credentials.
    if (err instanceof BackboneError) throw new BackboneError(hideUrlCredentials(err.message), { cause: err.cause });
    throw new BackboneError(`cannot load model ${redactUrl(url)}: ${hideUrlCredentials((err as Error).message)}`, { cause: err });
  }
  throw new BackboneError(`unsupported model URL ${redactUrl(url)}: use file://, http(s):// or embedded:`);
}

/**
 * model.json's content. @throws BackboneError that says it is not JSON without quoting it: the
 * bytes may be anything a URL or path answered (a metrics page, /etc/passwd), and errors are shown.
 */
function parseModelJson(text: string, origin: string): ModelJson {
  try {
    return JSON.parse(text) as ModelJson;
  } catch {
    throw new BackboneError(`${redactUrl(origin)} is not a TF.js model.json (not JSON; ${text.length} characters)`);
  }
}

/** Whether a URL names an ONNX model (a `.onnx` file). */
export function isOnnxUrl(url: string): boolean {
  return /\.onnx$/i.test(url.replace(/[?#].*$/, ''));
}

/**
 * An ONNX model's file: uploaded (by SHA-256), local (under the file policy and size cap), or
 * downloaded (capped, cached and hash-checked like any download).
 */
async function readOnnxModel(url: string, opts: FetchModelOptions): Promise<ModelFiles> {
  const max = maxModelBytes(opts);
  if (opts.upload) return onnxFiles(await readUploadedBlob(opts.upload, opts.readUpload, max), `${url} (uploaded, ${opts.upload})`);
  if (url.startsWith('file:')) {
    refuseUnlessFilesAllowed(url, opts);
    const path = fileURLToPath(url);
    const found = await stat(path).catch(() => undefined);
    if (!found) throw new BackboneError(`model ${path}: no such file (check the path)`);
    if (found.size > max) throw new BackboneError(`model ${path} has ${found.size} bytes, over the ${max}-byte limit`);
    return onnxFiles(await readFile(path), path);
  }
  if (!/^https?:/.test(url)) throw new BackboneError(`unsupported model URL ${redactUrl(url)}: an .onnx is read from file:// or http(s)://`);
  const dir = join(opts.cacheDir ?? defaultCacheDir(), createHash('sha256').update(url).digest('hex').slice(0, 24));
  const hit = await readCache(dir, opts.onWarning);
  if (hit) return { ...hit, origin: url };
  const { bytes } = await download(url, opts.timeoutMs ?? 120_000, url.split('/').pop() ?? 'model.onnx', { left: max, max }, opts);
  const files = onnxFiles(bytes, url);
  const { modelJson, weights } = modelBundle(files);
  await writeCache(dir, url, [
    ['model.json', modelJson],
    ['model.onnx', weights],
  ]);
  return files;
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
  const max = maxModelBytes(opts);
  // An uploaded .pb is the graph itself, already out of any archive.
  if (opts.upload) return readUploadedBlob(opts.upload, opts.readUpload, max);
  let bytes: Uint8Array;
  if (src.fileUrl.startsWith('file:')) {
    refuseUnlessFilesAllowed(url, opts);
    const path = fileURLToPath(src.fileUrl);
    const size = (await stat(path)).size;
    if (size > max) throw new BackboneError(`model ${path} has ${size} bytes, over the ${max}-byte limit`);
    bytes = await readFile(path);
  } else if (/^https?:/.test(src.fileUrl)) {
    bytes = (await download(src.fileUrl, opts.timeoutMs ?? 120_000, src.fileUrl.split('/').pop() ?? 'model', { left: max, max }, opts)).bytes;
  } else throw new BackboneError(`unsupported model URL ${url}: a .pb is read from file:// or http(s)://`);
  return src.member ? extractMember(bytes, src.member, src.fileUrl, max) : bytes;
}

/**
 * What `graft publish` uploads for a local model (`file://`, a folder, a .pb or an archive#member):
 * read and checked here, on the user's machine, under the size cap the cluster applies.
 * @throws BackboneError naming the file and what is wrong.
 */
export async function localModelUpload(url: string, maxBytes = DEFAULT_MAX_MODEL_BYTES): Promise<ModelUpload> {
  const src = graphDefSource(url);
  if (src) return fileUpload(await readGraphDefBytes(url, { ...USER_MODEL_POLICY, maxBytes }), src.member ?? src.fileUrl.split('/').pop()!);
  const files = await fetchModel(url, { ...USER_MODEL_POLICY, maxBytes });
  // An ONNX model travels as its one file, named by its SHA-256, as a .pb does.
  if (isOnnxModel(files)) return fileUpload(new Uint8Array(files.weightData), url.split('/').pop()!);
  return tfjsUpload(files);
}

/**
 * A GraphDef converted to a TF.js graph model. Downloads are cached converted (by source URL and
 * cut), verified like any cached model; a local .pb is read and converted on each load.
 */
async function readGraphDefModel(url: string, src: { fileUrl: string }, opts: FetchModelOptions): Promise<ModelFiles> {
  const cut = { bottleneck: opts.graph?.bottleneck || undefined, inputSize: opts.graph?.inputSize || undefined, inputNode: opts.graph?.inputNode || undefined };
  const remote = /^https?:/.test(src.fileUrl);
  const dir = join(
    opts.cacheDir ?? defaultCacheDir(),
    createHash('sha256')
      .update(`${url}|${cut.bottleneck ?? ''}|${cut.inputSize ?? ''}|${cut.inputNode ?? ''}`)
      .digest('hex')
      .slice(0, 24),
  );
  if (remote) {
    const cached = await readCache(dir, opts.onWarning);
    if (cached) return { ...cached, origin: url, graph: cached.json.graftGraphSource as GraphSource };
  }
  const files = graphDefModel(await readGraphDefBytes(url, opts), { ...cut, origin: url });
  if (remote) {
    const { modelJson, weights } = modelBundle(files);
    await writeCache(dir, url, [
      ['model.json', modelJson],
      ['weights.bin', weights],
    ]);
  }
  return files;
}

async function readLocal(path: string, maxBytes: number): Promise<ModelFiles> {
  const found = await stat(path).catch(() => undefined);
  if (!found) throw new BackboneError(`model ${path}: no such file or folder (check the path)`);
  const file = found.isDirectory() ? join(path, 'model.json') : path;
  const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new BackboneError(err.code === 'ENOENT' ? `model folder ${path} has no model.json` : `cannot read model ${file}: ${err.message}`);
  });
  const json = parseModelJson(text, file);
  const dir = dirname(file);
  const paths = shardPaths(json, file);
  let total = 0;
  for (const p of paths) total += (await stat(join(dir, p))).size;
  if (total > maxBytes) throw new BackboneError(`model ${file} has ${total} bytes of weights, over the ${maxBytes}-byte limit`);
  const shards = await Promise.all(paths.map((p) => readFile(join(dir, p))));
  return modelFilesFrom(json, shards, file);
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
  const shards = await Promise.all(shardPaths(json, url).map(async (p) => Buffer.from((await load(p)) as string, 'base64')));
  return modelFilesFrom(json, shards, `${url} (${dir})`);
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

async function readHttp(url: string, opts: FetchModelOptions): Promise<ModelFiles> {
  const dir = join(opts.cacheDir ?? defaultCacheDir(), createHash('sha256').update(url).digest('hex').slice(0, 24));
  const cached = await readCache(dir, opts.onWarning);
  if (cached) return { ...cached, origin: url };

  const { modelUrl, fileUrl } = hubUrls(url);
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const budget = { left: maxModelBytes(opts), max: maxModelBytes(opts) };
  const { bytes: jsonBytes, url: finalUrl } = await download(modelUrl, timeoutMs, 'model.json', budget, opts);
  // Weights are next to where model.json really is, after redirects.
  // (TF Hub redirects to Kaggle: the query, ?tfjs-format=file, goes along.)
  const shardUrl = finalUrl === modelUrl ? fileUrl : (p: string) => Object.assign(new URL(p, finalUrl), { search: new URL(finalUrl).search }).toString();
  let json: ModelJson;
  json = parseModelJson(Buffer.from(jsonBytes).toString('utf8'), modelUrl);
  const paths = shardPaths(json, redactUrl(modelUrl));
  const shards: Uint8Array[] = [];
  for (const p of paths) shards.push((await download(shardUrl(p), timeoutMs, p, budget, opts)).bytes);
  const files = modelFilesFrom(json, shards, url);

  await writeCache(dir, url, [['model.json', jsonBytes], ...paths.map((p, i) => [safeName(p), shards[i]] as [string, Uint8Array])]);
  return files;
}

/**
 * Downloads one model file through the shared capped fetch, against what is left of the model's
 * byte budget (all its files together).
 * @throws BackboneError naming the URL and why.
 */
async function download(
  url: string,
  timeoutMs: number,
  label: string,
  budget: { left: number; max: number },
  opts: Pick<FetchModelOptions, 'onProgress' | 'allowPrivateHosts'>,
): Promise<{ bytes: Uint8Array; url: string }> {
  const onProgress = opts.onProgress;
  let got;
  try {
    got = await fetchCapped(url, {
      timeoutMs,
      maxBytes: budget.left,
      limitBytes: budget.max,
      allowPrivateHosts: opts.allowPrivateHosts ?? false,
      privateHint: 'graft coordinator --allow-private-model-hosts',
    });
  } catch (err) {
    if (!(err instanceof FetchFailure)) throw err;
    const what = err.kind === 'too-large' ? `the model is ${err.message}` : err.message;
    throw new BackboneError(`cannot download ${err.kind === 'too-large' || err.kind === 'redirect' ? redactUrl(url) : err.url}: ${what}`, { cause: err });
  }
  budget.left -= got.bytes.byteLength;
  onProgress?.(label, got.bytes.byteLength);
  return { bytes: got.bytes, url: got.url };
}
