import { open, realpath, stat } from 'node:fs/promises';
import { basename, dirname, extname, isAbsolute, resolve, sep } from 'node:path';
import { parse as parseCsv } from 'csv-parse/sync';
import { Split, splitNamed } from '@graft/protocol';
import { imageKind } from '@graft/vision';

/**
 * Image list files: images with labels and splits, read from CSV, TSV or JSONL (a dataset's manifest is made from one).
 * - A header names the columns (Hugging Face imagefolder's `file_name`, a labelling tool's export):
 *   image, label and split columns are found by name, or given with --image-column etc.
 * - Without a header, a CSV is read as AutoML Vision's import format: `[SET,]location,label[,label...]`.
 * - A location is a path relative to the list, an absolute path, or an http(s) URL.
 */

export type ListFormat = 'csv' | 'tsv' | 'jsonl';

/** One image of a list, with where it was listed. */
export interface ListedImage {
  /** 1-based line of the list. */
  line: number;
  /** As written in the list. */
  location: string;
  /** An absolute path for local files; undefined for URLs. */
  file?: string;
  /** The http(s) URL for remote images. */
  url?: string;
  label: string;
  split: Split;
}

export interface ImageListOptions {
  /** csv, tsv or jsonl. Default: from the extension (and the header). */
  format?: ListFormat;
  imageColumn?: string;
  labelColumn?: string;
  splitColumn?: string;
  /** Images with several labels take the first instead of being refused. */
  firstLabel?: boolean;
  /** Local paths may point outside the list's folder (never into /proc, /sys or /dev). Default false. */
  allowOutsidePaths?: boolean;
  /** Largest local file a list may name, bytes. Default 50 MiB (the folder scan's cap). */
  maxBytes?: number;
  /** Photos to classify (graft predict): no label column needed, labels ignored. */
  unlabelled?: boolean;
}

export interface ImageList {
  /** `<file name>` for sources (`labels.csv:12`). */
  name: string;
  format: ListFormat;
  images: ListedImage[];
  /** Every problem, each naming its line: nothing is uploaded while there is one. */
  problems: string[];
}

const IMAGE_COLUMNS = ['file_name', 'image', 'image_path', 'path', 'file', 'filename', 'url', 'image_url', 'location'];
const LABEL_COLUMNS = ['label', 'labels', 'class', 'category', 'class_name'];
const SPLIT_COLUMNS = ['split', 'set', 'subset', 'ml_use'];
/** Whether a path names a list rather than a folder of class folders. */
export function isImageListFile(path: string): boolean {
  return ['.csv', '.tsv', '.jsonl', '.ndjson'].includes(extname(path).toLowerCase());
}

/** A row as columns: the image, its labels (one or more) and its split value. */
interface Row {
  line: number;
  location: string;
  labels: string[];
  split: string;
}

/**
 * Reads a list and checks every row (unknown split, empty label, several labels, duplicates,
 * bad URLs, missing files), collecting every problem with its line.
 * @throws Error only when the list cannot be read as its format at all.
 */
export async function readImageList(path: string, text: string, o: ImageListOptions = {}): Promise<ImageList> {
  const format = o.format ?? formatOf(path);
  const rows = format === 'jsonl' ? jsonlRows(text, o) : delimitedRows(text, format === 'tsv' ? '\t' : ',', o);
  const problems: string[] = [...rows.problems];
  const images: ListedImage[] = [];
  const seen = new Map<string, number>();
  const base = dirname(resolve(path));
  for (const r of rows.rows) {
    const at = `line ${r.line}`;
    const split = splitNamed(r.split);
    if (split === undefined) problems.push(`${at}: unknown split ${JSON.stringify(r.split)} (use train, validation or test)`);
    const labels = o.unlabelled ? [] : r.labels.map((l) => l.trim()).filter(Boolean);
    if (labels.length === 0 && !o.unlabelled) problems.push(`${at}: ${r.location || 'the image'} has no label`);
    else if (labels.length > 1 && !o.firstLabel)
      problems.push(
        `${at}: ${r.location} has ${labels.length} labels (${labels.join(', ')}); graft trains single-label classifiers: keep one, or pass --first-label`,
      );
    const location = r.location.trim();
    if (!location) {
      problems.push(`${at}: no image location`);
      continue;
    }
    const first = seen.get(location);
    if (first !== undefined) problems.push(`${at}: ${location} is listed again (first on line ${first})`);
    else seen.set(location, r.line);
    const image: ListedImage = { line: r.line, location, label: labels[0] ?? '', split: split ?? Split.SPLIT_UNSPECIFIED };
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(location)) {
      let url: URL | undefined;
      try {
        url = new URL(location);
      } catch {
        // reported below
      }
      if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
        problems.push(`${at}: ${location} is not an http(s) URL or a path (download gs:// and other stores first, or serve them over https)`);
        continue;
      }
      image.url = url.toString();
    } else {
      const file = isAbsolute(location) ? location : resolve(base, location);
      const problem = await localFileProblem(file, base, o);
      if (problem) {
        problems.push(`${at}: ${location}: ${problem}`);
        continue;
      }
      image.file = file;
    }
    images.push(image);
  }
  return { name: basename(path), format, images, problems };
}

function formatOf(path: string): ListFormat {
  const ext = extname(path).toLowerCase();
  if (ext === '.tsv') return 'tsv';
  if (ext === '.jsonl' || ext === '.ndjson') return 'jsonl';
  return 'csv';
}

function pick(names: string[], wanted: string | undefined, candidates: string[]): number {
  const lower = names.map((n) => n.trim().toLowerCase());
  if (wanted) return lower.indexOf(wanted.toLowerCase());
  return lower.findIndex((n) => candidates.includes(n));
}

function delimitedRows(text: string, delimiter: string, o: ImageListOptions): { rows: Row[]; problems: string[] } {
  const records = parseCsv(text, { delimiter, relax_column_count: true, skip_empty_lines: true, info: true, bom: true, trim: false }) as unknown as {
    record: string[];
    info: { lines: number };
  }[];
  if (records.length === 0) return { rows: [], problems: ['the list has no rows'] };
  const header = records[0].record;
  const hasHeader = Boolean(o.imageColumn || o.labelColumn) || pick(header, undefined, IMAGE_COLUMNS) >= 0;
  const problems: string[] = [];
  const rows: Row[] = [];
  if (hasHeader) {
    const img = pick(header, o.imageColumn, IMAGE_COLUMNS);
    const lab = pick(header, o.labelColumn, LABEL_COLUMNS);
    const spl = pick(header, o.splitColumn, SPLIT_COLUMNS);
    if (img < 0) problems.push(`line 1: no image column (looked for ${o.imageColumn ?? IMAGE_COLUMNS.join(', ')}; name it with --image-column)`);
    if (lab < 0 && !o.unlabelled)
      problems.push(`line 1: no label column (looked for ${o.labelColumn ?? LABEL_COLUMNS.join(', ')}; name it with --label-column)`);
    if (o.splitColumn && spl < 0) problems.push(`line 1: no split column ${JSON.stringify(o.splitColumn)}`);
    if (problems.length) return { rows, problems };
    for (const { record, info } of records.slice(1)) {
      const labels = (record[lab] ?? '').split(/[;|]/);
      rows.push({ line: info.lines, location: record[img] ?? '', labels, split: spl >= 0 ? (record[spl] ?? '') : '' });
    }
    return { rows, problems };
  }
  // AutoML Vision: [SET,]location,label[,label...] with no header.
  for (const { record, info } of records) {
    const hasSet = record.length > 2 && splitNamed(record[0]) !== undefined && !/[/.]/.test(record[0]);
    const [split, location, ...labels] = hasSet ? record : ['', ...record];
    rows.push({ line: info.lines, location: location ?? '', labels, split });
  }
  return { rows, problems };
}

function jsonlRows(text: string, o: ImageListOptions): { rows: Row[]; problems: string[] } {
  const rows: Row[] = [];
  const problems: string[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = i + 1;
    if (!raw.trim()) return;
    let obj: Record<string, unknown>;
    try {
      obj = JSON.parse(raw) as Record<string, unknown>;
      if (!obj || typeof obj !== 'object' || Array.isArray(obj)) throw new Error('not an object');
    } catch (err) {
      problems.push(`line ${line}: not a JSON object (${(err as Error).message})`);
      return;
    }
    const keys = Object.keys(obj);
    const key = (wanted: string | undefined, candidates: string[]) => keys[pick(keys, wanted, candidates)];
    const img = key(o.imageColumn, IMAGE_COLUMNS);
    const lab = key(o.labelColumn, LABEL_COLUMNS);
    const spl = key(o.splitColumn, SPLIT_COLUMNS);
    const label = lab === undefined ? [] : Array.isArray(obj[lab]) ? (obj[lab] as unknown[]).map(String) : [String(obj[lab] ?? '')];
    rows.push({ line, location: img === undefined ? '' : String(obj[img] ?? ''), labels: label, split: spl === undefined ? '' : String(obj[spl] ?? '') });
  });
  return { rows, problems };
}

/** System folders whose files are never images, whatever a list says (secrets live there: /proc/self/environ). */
const NEVER_READ = ['/proc', '/sys', '/dev'];

/**
 * Why a local file a list names may not be published, or undefined: it must exist, lie inside the
 * list's folder (after links are followed) unless outside paths are allowed, never in a system
 * folder, be no bigger than the cap, and start like an image.
 */
async function localFileProblem(file: string, base: string, o: ImageListOptions): Promise<string | undefined> {
  const real = await realpath(file).catch(() => undefined);
  if (!real) return 'no such file';
  if (NEVER_READ.some((d) => real === d || real.startsWith(`${d}/`))) return `is in ${real.split('/').slice(0, 2).join('/')}, which holds no images: refused`;
  const realBase = await realpath(base).catch(() => base);
  if (!o.allowOutsidePaths && real !== realBase && !real.startsWith(`${realBase}${sep}`))
    return `is outside the list's folder ${realBase} (pass --allow-outside-paths to publish it)`;
  const st = await stat(real).catch(() => undefined);
  if (!st?.isFile()) return 'no such file';
  const max = o.maxBytes ?? 50 * 1024 * 1024;
  if (st.size > max) return `${st.size} bytes is over the ${max}-byte limit`;
  const head = new Uint8Array(16);
  const fh = await open(real, 'r');
  try {
    await fh.read(head, 0, 16, 0);
  } finally {
    await fh.close();
  }
  return imageKind(head) ? undefined : 'is not an image (its first bytes are no image format graft reads)';
}
