/*
 * Which unlabelled photos to label next (graft predict --suggest N): the ones the head is least sure
 * of (smallest margin between its top two classes), spread over the collection (k-center greedy on
 * their vectors) so that N suggestions are not N copies of one confusing scene. Uncertainty first
 * narrows a collection of any size to a pool of {@link poolSize} candidates, kept in a bounded heap
 * as the answers stream by; diversity is chosen within the pool.
 */

/** Most photos that may be suggested at once (k-center greedy costs pool x N distances). */
export const MAX_SUGGEST = 1000;

/** The uncertain candidates kept for N suggestions: ten per suggestion (Sener and Savarese's pool, narrowed by margin first). */
export function poolSize(n: number): number {
  return Math.min(10_000, 10 * n);
}

export interface Candidate {
  index: number;
  margin: number;
}

/** The `capacity` candidates of smallest margin seen so far (a max-heap on margin: the least uncertain leaves first). */
export class UncertainPool<T extends Candidate> {
  private readonly heap: T[] = [];
  seen = 0;

  constructor(readonly capacity: number) {}

  add(c: T): void {
    this.seen++;
    const h = this.heap;
    if (h.length < this.capacity) {
      h.push(c);
      this.up(h.length - 1);
    } else if (this.before(c, h[0])) {
      h[0] = c;
      this.down(0);
    }
  }

  /** The candidates, most uncertain first. */
  sorted(): T[] {
    return [...this.heap].sort((a, b) => (this.before(a, b) ? -1 : 1));
  }

  /** Whether a is more uncertain than b (ties: the earlier photo). */
  private before(a: T, b: T): boolean {
    return a.margin < b.margin || (a.margin === b.margin && a.index < b.index);
  }

  private up(i: number): void {
    const h = this.heap;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.before(h[p], h[i])) break;
      [h[p], h[i]] = [h[i], h[p]];
      i = p;
    }
  }

  private down(i: number): void {
    const h = this.heap;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let top = i;
      if (l < h.length && this.before(h[top], h[l])) top = l;
      if (r < h.length && this.before(h[top], h[r])) top = r;
      if (top === i) return;
      [h[top], h[i]] = [h[i], h[top]];
      i = top;
    }
  }
}

/**
 * k-center greedy (Sener and Savarese, 2018): starting from the first vector (the most uncertain
 * photo), repeatedly the vector farthest from every one chosen so far, by cosine distance.
 * @returns the chosen vectors' indices, in the order chosen.
 */
export function kCenterGreedy(vectors: readonly Float32Array[], n: number): number[] {
  const m = vectors.length;
  if (m === 0 || n <= 0) return [];
  const unit = vectors.map(normalized);
  const nearest = new Float64Array(m).fill(Infinity);
  const chosen: number[] = [];
  const picked = new Uint8Array(m);
  let next = 0;
  while (chosen.length < Math.min(n, m)) {
    chosen.push(next);
    picked[next] = 1;
    const c = unit[next];
    let far = -1;
    let farDistance = -Infinity;
    for (let i = 0; i < m; i++) {
      const d = 1 - dot(c, unit[i]);
      if (d < nearest[i]) nearest[i] = d;
      if (nearest[i] > farDistance && !picked[i]) {
        farDistance = nearest[i];
        far = i;
      }
    }
    if (far < 0) break;
    next = far;
  }
  return chosen;
}

function dot(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

function normalized(v: Float32Array): Float32Array {
  const norm = Math.sqrt(dot(v, v)) || 1;
  return v.map((x) => x / norm);
}
