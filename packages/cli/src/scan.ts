import { createHash } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { extname, join, relative, sep } from 'node:path';
import type { Split } from '@graft/protocol';
import { IMAGE_EXTENSIONS } from '@graft/vision';

export interface ScannedImage {
  path: string;
  label: string;
  sha256: string;
  sizeBytes: number;
  /** Absolute path, for reading; none for an image downloaded (and stored) already. */
  file?: string;
  /** The set a list fixed for it. */
  split?: Split;
  /** Where it was listed (`labels.csv:12`), for images from a list. */
  source?: string;
}

export interface ScanResult {
  root: string;
  classes: string[];
  images: ScannedImage[];
  skipped: { path: string; reason: string }[];
}

export interface ScanOptions {
  /** Files larger than this are skipped, bytes. Default 50 MiB. */
  maxBytes?: number;
  onFile?: (done: number, total: number) => void;
}

/**
 * Reads a class-per-folder tree (`DIR/<class>/**\/<image>`), hashing every image.
 * Files that are not images by extension, and files outside a class folder, are skipped
 * with a reason. @throws Error when DIR is missing or has fewer than two class folders.
 */
export async function scanDataset(root: string, opts: ScanOptions = {}): Promise<ScanResult> {
  const maxBytes = opts.maxBytes ?? 50 * 1024 * 1024;
  let entries;
  try {
    entries = await readdir(root, { withFileTypes: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTDIR')
      throw new Error(`${root} is a file, not a folder: give a folder of class folders (DIR/cat/*.jpg, DIR/dog/*.jpg) or a .csv, .tsv or .jsonl list`, {
        cause: err,
      });
    if (code === 'ENOENT') throw new Error(`${root}: no such folder (check the path)`, { cause: err });
    throw new Error(`cannot read dataset folder ${root}: ${code ?? (err as Error).message}`, { cause: err });
  }
  const skipped: ScanResult['skipped'] = [];
  const classes = entries
    .filter((e) => e.isDirectory() && !e.name.startsWith('.'))
    .map((e) => e.name)
    .sort();
  for (const e of entries) if (e.isFile() && !e.name.startsWith('.')) skipped.push({ path: e.name, reason: 'not inside a class folder' });
  if (classes.length < 2) throw new Error(`${root} needs at least two class folders (one per label), found ${classes.length}`);

  const files: { file: string; label: string }[] = [];
  for (const label of classes) {
    for (const f of await walk(join(root, label))) files.push({ file: f, label });
  }
  return { root, classes, ...(await hashFiles(root, files, maxBytes, opts, skipped)) };
}

/**
 * Reads a folder of unlabelled photos (graft predict): every image at any depth, hashed, its path
 * relative to the folder; labels empty. @throws Error when DIR is missing or not a folder.
 */
export async function scanPhotos(root: string, opts: ScanOptions = {}): Promise<ScanResult> {
  const st = await stat(root).catch(() => undefined);
  if (!st) throw new Error(`${root}: no such folder (check the path)`);
  if (!st.isDirectory()) throw new Error(`${root} is a file, not a folder: give a folder of photos or a .csv, .tsv or .jsonl list`);
  const files = (await walk(root)).map((file) => ({ file, label: '' }));
  return { root, classes: [], ...(await hashFiles(root, files, opts.maxBytes ?? 50 * 1024 * 1024, opts, [])) };
}

/** Hashes image files (skipping others and those over the cap, with why). */
async function hashFiles(
  root: string,
  files: { file: string; label: string }[],
  maxBytes: number,
  opts: ScanOptions,
  skipped: ScanResult['skipped'],
): Promise<Pick<ScanResult, 'images' | 'skipped'>> {
  const images: ScannedImage[] = [];
  let done = 0;
  for (const { file, label } of files) {
    const path = relative(root, file).split(sep).join('/');
    const ext = extname(file).toLowerCase();
    if (!IMAGE_EXTENSIONS.has(ext)) {
      skipped.push({ path, reason: `not an image (extension ${JSON.stringify(ext || '(none)')})` });
    } else {
      const size = (await stat(file)).size;
      if (size > maxBytes) skipped.push({ path, reason: `${size} bytes is over the ${maxBytes}-byte limit` });
      else {
        const bytes = await readFile(file);
        images.push({ path, label, file, sizeBytes: size, sha256: createHash('sha256').update(bytes).digest('hex') });
      }
    }
    opts.onFile?.(++done, files.length);
  }
  return { images, skipped };
}

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of (await readdir(dir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
    if (e.name.startsWith('.')) continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walk(p)));
    else if (e.isFile()) out.push(p);
  }
  return out;
}
