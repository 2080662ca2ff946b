import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { Bus } from '@graft/protocol';
import { redactUrl } from '@graft/vision';
import { downloadImages } from './downloads.js';
import { readImageList, type ImageList, type ImageListOptions } from './image-list.js';
import { createProgress } from './progress.js';
import type { PublishOptions } from './publish-options.js';
import { scanDataset, scanPhotos, type ScanResult, type ScannedImage } from './scan.js';

/* What a publish reads its photos from: a folder (of class folders, or of unlabelled photos), a list, a list added. */

/**
 * Adds a labelled list's photos (to-label.csv, filled in) to a scan: its classes joined to the
 * folder's, a path already scanned left as the folder has it. Its paths are the user's own: outside
 * the list's folder is allowed.
 */
export async function addList(bus: Bus, scan: ScanResult, o: PublishOptions, show: boolean): Promise<void> {
  const extra = await scanList(bus, await checkedList(o.add!, { allowOutsidePaths: true, maxBytes: o.list?.maxBytes }), o, show);
  const paths = new Set(scan.images.map((i) => i.path));
  const fresh = extra.images.filter((i) => !paths.has(i.path));
  scan.images.push(...fresh);
  scan.skipped.push(...extra.skipped);
  scan.classes = [...new Set([...scan.classes, ...extra.classes])].sort();
  if (show)
    process.stderr.write(`--add ${o.add}: ${fresh.length} labelled photos added (${extra.images.length - fresh.length} already in the folder)
`);
}

export async function scanFolder(dir: string, show: boolean, unlabelled = false): Promise<ScanResult> {
  const bar = show ? createProgress('scanning') : undefined;
  const scan = await (unlabelled ? scanPhotos : scanDataset)(dir, { onFile: (d, t) => bar?.update(d, t) });
  bar?.done();
  return scan;
}

/**
 * Reads a list file and refuses it whole when any row has a problem, naming every problem with
 * its line, before anything is uploaded or downloaded.
 */
export async function checkedList(path: string, o: ImageListOptions = {}): Promise<ImageList> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new Error(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
  const list = await readImageList(path, text, o);
  if (list.problems.length) {
    const shown = list.problems.slice(0, 50);
    throw new Error(
      `${path} has ${list.problems.length} problem${list.problems.length > 1 ? 's' : ''}; nothing was uploaded:\n  ${shown.join('\n  ')}${list.problems.length > shown.length ? `\n  ... and ${list.problems.length - shown.length} more` : ''}`,
    );
  }
  if (list.images.length === 0) throw new Error(`${path} lists no images`);
  return list;
}

/** A checked list's images, local ones hashed, remote ones downloaded into the store (failures listed, the rest goes on). */
export async function scanList(bus: Bus, list: ImageList, o: PublishOptions, show: boolean): Promise<ScanResult> {
  const images: ScannedImage[] = [];
  const skipped: ScanResult['skipped'] = [];
  const source = (line: number) => `${list.name}:${line}`;
  for (const img of list.images.filter((i) => i.file)) {
    const bytes = await readFile(img.file!);
    images.push({
      path: img.location,
      label: img.label,
      sha256: createHash('sha256').update(bytes).digest('hex'),
      sizeBytes: bytes.byteLength,
      file: img.file,
      split: img.split,
      source: source(img.line),
    });
  }
  const remote = list.images.filter((i) => i.url);
  if (remote.length) {
    const bar = show ? createProgress('downloading') : undefined;
    const got = await downloadImages(
      bus,
      remote.map((i) => i.url!),
      { ...o.download, onProgress: (d, t) => bar?.update(d, t) },
    );
    bar?.done(
      show ? `downloaded ${got.downloaded} images (${remote.length - got.downloaded - got.failed.size} unchanged), ${got.failed.size} failed` : undefined,
    );
    for (const img of remote) {
      const ok = got.stored.get(img.url!);
      // Stored and shown without the URL's credentials: the manifest is readable by every cli user.
      if (ok)
        images.push({ path: redactUrl(img.location), label: img.label, sha256: ok.sha256, sizeBytes: ok.size, split: img.split, source: source(img.line) });
      else skipped.push({ path: redactUrl(img.location), reason: `${source(img.line)}: ${got.failed.get(img.url!) ?? 'not downloaded'}` });
    }
  }
  const classes = [...new Set(images.map((i) => i.label))].sort();
  return { root: list.name, classes, images, skipped };
}
