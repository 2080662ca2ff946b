import { readFile } from 'node:fs/promises';
import { parseFixes, type Fix } from '@graft/head';
import type { ScanResult } from './scan.js';

/*
 * --exclude FILE and --relabel FILE: an audit's fixes list (graft audit --write-fixes), perhaps
 * edited, applied to the scanned photos before anything is published. The photos stay in the image
 * store and their vectors in the cache, so the new job extracts nothing.
 */

export interface FixesOption {
  mode: 'exclude' | 'relabel';
  file: string;
}

export interface FixesApplied {
  excluded: number;
  relabelled: number;
  /** Lines naming a photo the folder or list does not have, or whose given label is no longer its label. */
  stale: string[];
}

/** Reads a fixes file. @throws Error naming the file (and line) when it cannot be read or parsed. */
export async function readFixes(o: FixesOption): Promise<Fix[]> {
  let text: string;
  try {
    text = await readFile(o.file, 'utf8');
  } catch (err) {
    throw new Error(`cannot read --${o.mode} ${o.file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
  return parseFixes(text, `--${o.mode} ${o.file}`);
}

/**
 * Drops (exclude) or relabels (relabel: to the suggested label; an empty suggestion drops it) the
 * listed photos of a scan, in place, and recomputes its classes.
 */
export function applyFixes(scan: ScanResult, fixes: readonly Fix[], mode: FixesOption['mode']): FixesApplied {
  const byPath = new Map(fixes.map((f) => [f.path, f]));
  const out: FixesApplied = { excluded: 0, relabelled: 0, stale: [] };
  const found = new Set<string>();
  scan.images = scan.images.filter((img) => {
    const f = byPath.get(img.path);
    if (!f) return true;
    found.add(f.path);
    if (f.given && f.given !== img.label) {
      out.stale.push(`${f.path}: listed as ${f.given}, now ${img.label} (left as it is)`);
      return true;
    }
    if (mode === 'exclude' || !f.suggested) {
      out.excluded++;
      return false;
    }
    if (f.suggested !== img.label) {
      img.label = f.suggested;
      out.relabelled++;
    }
    return true;
  });
  for (const f of fixes) if (!found.has(f.path)) out.stale.push(`${f.path}: not in this folder or list`);
  const labels = new Set(scan.images.map((i) => i.label));
  // Keep the folder's class order; a class a relabel introduced comes after, sorted.
  scan.classes = [...scan.classes.filter((c) => labels.has(c)), ...[...labels].filter((l) => !scan.classes.includes(l)).sort()];
  return out;
}
