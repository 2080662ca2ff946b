import type { AuditPhoto, AuditRef, DuplicateGroup, LeakedPair, Outlier } from './audit-types.js';
import { nearestNeighbours, type Neighbours } from './neighbours.js';

/* Duplicates, split leaks and outliers, from the photos' hashes and nearest neighbours. */

/** Neighbours each photo keeps for the duplicate search. */
export const DUPLICATE_NEIGHBOURS = 8;

export interface Pair {
  a: number;
  b: number;
  similarity: number;
  kind: 'exact' | 'near';
}

export const refOf = (p: AuditPhoto, classes: readonly string[]): AuditRef => ({ path: p.path, sha256: p.sha256, label: classes[p.label], split: p.split });

/** Every pair of photos with the same content hash, and every other pair at or above the threshold. */
export function duplicatePairs(photos: readonly AuditPhoto[], nn: Neighbours, threshold: number): Pair[] {
  const pairs: Pair[] = [];
  const bySha = new Map<string, number[]>();
  photos.forEach((p, i) => {
    const group = bySha.get(p.sha256);
    if (group) group.push(i);
    else bySha.set(p.sha256, [i]);
  });
  for (const group of bySha.values())
    for (let x = 0; x < group.length; x++) for (let y = x + 1; y < group.length; y++) pairs.push({ a: group[x], b: group[y], similarity: 1, kind: 'exact' });
  const seen = new Set<string>();
  for (let i = 0; i < photos.length; i++) {
    for (let r = 0; r < nn.k; r++) {
      const j = nn.index[i * nn.k + r];
      const s = nn.similarity[i * nn.k + r];
      if (j < 0 || s < threshold) break;
      if (photos[i].sha256 === photos[j].sha256) continue;
      const key = i < j ? `${i} ${j}` : `${j} ${i}`;
      if (seen.has(key)) continue;
      seen.add(key);
      pairs.push({ a: Math.min(i, j), b: Math.max(i, j), similarity: Math.min(1, s), kind: 'near' });
    }
  }
  return pairs;
}

/** Pairs joined into groups (connected components); a group is exact when every link is. */
export function duplicateGroups(photos: readonly AuditPhoto[], pairs: readonly Pair[], classes: readonly string[]): DuplicateGroup[] {
  const parent = new Map<number, number>();
  const find = (x: number): number => {
    let r = x;
    while (parent.get(r) !== undefined && parent.get(r) !== r) r = parent.get(r)!;
    parent.set(x, r);
    return r;
  };
  for (const p of pairs) {
    if (!parent.has(p.a)) parent.set(p.a, p.a);
    if (!parent.has(p.b)) parent.set(p.b, p.b);
    parent.set(find(p.a), find(p.b));
  }
  const groups = new Map<number, { members: Set<number>; similarity: number; near: boolean }>();
  for (const p of pairs) {
    const root = find(p.a);
    const g = groups.get(root) ?? { members: new Set<number>(), similarity: 1, near: false };
    g.members.add(p.a).add(p.b);
    g.similarity = Math.min(g.similarity, p.similarity);
    g.near ||= p.kind === 'near';
    groups.set(root, g);
  }
  return [...groups.values()]
    .map((g) => {
      const members = [...g.members].sort((a, b) => a - b);
      return {
        kind: g.near ? ('near' as const) : ('exact' as const),
        similarity: g.similarity,
        photos: members.map((m) => refOf(photos[m], classes)),
        conflictingLabels: new Set(members.map((m) => photos[m].label)).size > 1,
      };
    })
    .sort(
      (a, b) =>
        Number(b.conflictingLabels) - Number(a.conflictingLabels) || b.photos.length - a.photos.length || a.photos[0].path.localeCompare(b.photos[0].path),
    );
}

/** Duplicate pairs whose photos sit in different splits, and test accuracy with and without the test photos they leak. */
export function splitLeaks(
  photos: readonly AuditPhoto[],
  pairs: readonly Pair[],
  classes: readonly string[],
  predicted?: Int32Array,
): { pairs: LeakedPair[]; leakedTestPhotos: number; testAccuracy?: { all: number; withoutLeaked: number; testPhotos: number } } {
  const leaked = pairs.filter((p) => photos[p.a].split !== photos[p.b].split);
  const leakedTest = new Set<number>();
  for (const p of leaked) for (const x of [p.a, p.b]) if (photos[x].split === 'test') leakedTest.add(x);
  const out = {
    pairs: leaked.map((p) => ({ kind: p.kind, similarity: p.similarity, a: refOf(photos[p.a], classes), b: refOf(photos[p.b], classes) })),
    leakedTestPhotos: leakedTest.size,
  };
  if (!predicted) return out;
  const tests = photos.map((p, i) => i).filter((i) => photos[i].split === 'test' && predicted[i] >= 0);
  if (tests.length === 0) return out;
  const acc = (ids: number[]) => (ids.length ? ids.filter((i) => predicted[i] === photos[i].label).length / ids.length : 0);
  const clean = tests.filter((i) => !leakedTest.has(i));
  return { ...out, testAccuracy: { all: acc(tests), withoutLeaked: acc(clean), testPhotos: tests.length } };
}

/**
 * Photos far from everything of their class: distance = 1 - mean similarity to their k nearest
 * same-class photos, flagged at a robust z-score (median, 1.4826 x MAD of the class) >= minZ.
 * Classes too small to have a typical distance (fewer than k + 2 photos) are not scored.
 */
export async function findOutliers(
  photos: readonly AuditPhoto[],
  rows: Float32Array,
  dim: number,
  classes: readonly string[],
  k: number,
  minZ: number,
): Promise<Outlier[]> {
  const out: Outlier[] = [];
  for (let c = 0; c < classes.length; c++) {
    const members = photos.map((p, i) => i).filter((i) => photos[i].label === c);
    if (members.length < k + 2) continue;
    const nn = await nearestNeighbours(rows, dim, k, members);
    const distance = members.map((_, m) => {
      let s = 0;
      for (let r = 0; r < k; r++) s += nn.similarity[m * k + r];
      return 1 - s / k;
    });
    const median = quantile(distance, 0.5);
    const mad =
      1.4826 *
      quantile(
        distance.map((d) => Math.abs(d - median)),
        0.5,
      );
    if (!(mad > 0)) continue;
    members.forEach((i, m) => {
      const z = (distance[m] - median) / mad;
      if (z >= minZ) out.push({ ...refOf(photos[i], classes), distance: distance[m], z });
    });
  }
  return out.sort((a, b) => b.z - a.z);
}

function quantile(xs: readonly number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  const at = (s.length - 1) * q;
  const lo = Math.floor(at);
  return s[lo] + (s[Math.min(lo + 1, s.length - 1)] - s[lo]) * (at - lo);
}
