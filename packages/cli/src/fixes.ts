import { readFile } from 'node:fs/promises';
import { parseFixes, type Fix } from '@graft/head';
import { describeError } from './errors.js';

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
    throw new Error(`cannot read --${o.mode} ${o.file}: ${describeError(err)}`, { cause: err });
  }
  return parseFixes(text, `--${o.mode} ${o.file}`);
}

/**
 * Drops (exclude) or relabels (relabel: to the suggested label; an empty suggestion drops it) the
 * listed photos, and recomputes the classes: the given order kept, a class a relabel introduced
 * after them, sorted. Relabelled photos are changed in place.
 */
export function applyFixes<T extends { path: string; label: string }>(
  images: readonly T[],
  classes: readonly string[],
  fixes: readonly Fix[],
  mode: FixesOption['mode'],
): { images: T[]; classes: string[]; applied: FixesApplied } {
  const byPath = new Map(fixes.map((f) => [f.path, f]));
  const applied: FixesApplied = { excluded: 0, relabelled: 0, stale: [] };
  const found = new Set<string>();
  const kept = images.filter((img) => {
    const f = byPath.get(img.path);
    if (!f) return true;
    found.add(f.path);
    if (f.given && f.given !== img.label) {
      applied.stale.push(`${f.path}: listed as ${f.given}, now ${img.label} (left as it is)`);
      return true;
    }
    if (mode === 'exclude' || !f.suggested) {
      applied.excluded++;
      return false;
    }
    if (f.suggested !== img.label) {
      img.label = f.suggested;
      applied.relabelled++;
    }
    return true;
  });
  for (const f of fixes) if (!found.has(f.path)) applied.stale.push(`${f.path}: not in this folder or list`);
  const labels = new Set(kept.map((i) => i.label));
  return { images: kept, classes: [...classes.filter((c) => labels.has(c)), ...[...labels].filter((l) => !classes.includes(l)).sort()], applied };
}
