import { randomUUID } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { modelFilesFrom, sha256Hex, shardPaths, type ModelFiles, type ModelJson } from './model-files.js';

/*
 * The disk cache of downloaded models (~/.cache/graft/models, or --cache-dir): one folder per
 * source, each file's SHA-256 recorded in an index and checked on every load. This module is its
 * only reader and writer.
 */

export function defaultCacheDir(): string {
  return join(homedir(), '.cache', 'graft', 'models');
}

interface CacheIndex {
  url: string;
  files: Record<string, string>;
}

/**
 * Writes a cache entry (files and an index of their hashes) through a temp folder of our own
 * (loaders in other processes or containers may share the volume, with the same pid), then a
 * rename: a crash never leaves a half-written entry.
 */
export async function writeCache(dir: string, url: string, files: [string, Uint8Array][]): Promise<void> {
  const tmp = `${dir}.tmp-${randomUUID()}`;
  await mkdir(tmp, { recursive: true });
  const index: CacheIndex = { url, files: {} };
  for (const [name, bytes] of files) {
    await writeFile(join(tmp, name), bytes);
    index.files[name] = sha256Hex(bytes);
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
export async function readCache(dir: string, onWarning?: (message: string) => void): Promise<Omit<ModelFiles, 'origin'> | undefined> {
  let index: CacheIndex;
  try {
    index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as CacheIndex;
  } catch {
    return undefined; // no entry (or one a crash left without its index): download it
  }
  try {
    const jsonBytes = await readFile(join(dir, 'model.json'));
    if (sha256Hex(jsonBytes) !== index.files['model.json']) throw new Error('model.json hash mismatch');
    const json = JSON.parse(jsonBytes.toString('utf8')) as ModelJson;
    const shards = await Promise.all(
      shardPaths(json, dir).map(async (p) => {
        const name = safeName(p);
        const bytes = await readFile(join(dir, name));
        if (sha256Hex(bytes) !== index.files[name]) throw new Error(`${name} hash mismatch`);
        return bytes;
      }),
    );
    return modelFilesFrom(json, shards, dir);
  } catch (err) {
    onWarning?.(`cached model in ${dir} is damaged (${(err as Error).message}): removed, downloading it again`);
    await rm(dir, { recursive: true, force: true });
    return undefined;
  }
}

/** A cache entry's file name for a weights path (the path flattened). */
export function safeName(p: string): string {
  return p.replace(/[^A-Za-z0-9._-]/g, '_');
}
