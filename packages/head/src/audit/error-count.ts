/*
 * How many given labels are wrong, estimated from out-of-sample probabilities without the
 * confident joint (confident-learning.ts counts the smaller of the joint's count and this
 * estimate's upper bound).
 *
 * A mixture estimate on self-confidence s = p(given label), class by class (Storey's pi0 estimate,
 * with the null and the alternative swapped): a photo labelled c whose label is wrong scores on c
 * as a photo of another class does, so the scores on c of the photos labelled otherwise are the
 * null. Below the null's median lambda_c lie half the wrong labels and few right ones (a right
 * label scores high), so class c holds about #{labelled c, s <= lambda_c} / F0(lambda_c) wrong
 * labels, F0 the null's share at or below lambda_c (0.5 but for ties).
 *
 * Why not the confident joint alone: it counts every photo that is confidently another class, so
 * on classes that look alike (shirt, t-shirt, longsleeve) it counts their overlap as errors. On
 * clothing-small with 10 % of the labels flipped it counted 364 for 307 (calibrated: 514), and on
 * synthetic look-alike classes 88 for 60; the mixture estimate 290 and 62 (BENCHMARKS.md, the
 * unit tests). The mixture estimate over-counts in the opposite case, a classifier so sure that
 * wrong labels score below nearly every photo of another class (up to 2x), and is coarse for a
 * few errors (one error: 0 or 2); there the confident joint is right, so the count is the smaller
 * of the joint's count and the mixture estimate's upper bound.
 */

/** The mixture estimate: per class, photos labelled it at or below the null's median, over the null's share there. */
export function mixtureCount(probs: Float32Array, labels: ArrayLike<number>, C: number): number {
  const n = labels.length;
  const perClass = new Array<number>(C).fill(0);
  for (let i = 0; i < n; i++) perClass[labels[i]]++;
  let total = 0;
  for (let c = 0; c < C; c++) {
    if (perClass[c] === 0 || perClass[c] === n) continue;
    const others = new Float32Array(n - perClass[c]);
    for (let i = 0, k = 0; i < n; i++) if (labels[i] !== c) others[k++] = probs[i * C + c];
    others.sort();
    const lambda = others[(others.length - 1) >> 1];
    const share = upperBound(others, lambda) / others.length;
    let below = 0;
    for (let i = 0; i < n; i++) if (labels[i] === c && probs[i * C + c] <= lambda) below++;
    total += Math.min(perClass[c], below / share);
  }
  return Math.round(total);
}

/** How many of the ascending values are <= x. */
function upperBound(sorted: Float32Array, x: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const m = (lo + hi) >> 1;
    if (sorted[m] <= x) lo = m + 1;
    else hi = m;
  }
  return lo;
}

/**
 * The mixture estimate plus one standard deviation, and one: the photos below the median are a
 * binomial draw (p = 1/2) from the wrong labels, so a count of k errors is k +- sqrt(k); a set with
 * one wrong label estimates 0 or 2 by chance. The bound keeps such a set's confident joint (1).
 */
export function mixtureUpperBound(mixture: number): number {
  return Math.ceil(mixture + Math.sqrt(mixture) + 1);
}
