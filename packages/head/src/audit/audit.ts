import { argmax } from '../argmax.js';
import type { AuditInput, AuditOptions, AuditReport, LabelIssue, ResolvedAuditOptions } from './audit-types.js';
import { findLabelIssues } from './confident-learning.js';
import { DUPLICATE_NEIGHBOURS, duplicateGroups, duplicatePairs, findOutliers, refOf, splitLeaks } from './findings.js';
import { outOfSampleProbabilities, type FoldHooks } from './folds.js';
import { nearestNeighbours, unitRows } from './neighbours.js';

/*
 * graft audit: likely label errors (confident learning on K-fold out-of-sample probabilities),
 * exact and near duplicates, duplicates that cross splits, and outliers, all from the cached
 * vectors (no backbone call).
 */

/**
 * Centered cosine similarity from which two photos count as near-duplicates. Calibrated in the
 * bench (`--sections audit`, its threshold table) on clothing-small: with MobileNetV2-0.35 95 %,
 * with the default MobileNetV2-1.0 97 %, of re-encoded, resized, flipped and 10 % cropped copies
 * score above it (the cropped ones lowest); above it too are a few distinct product photos shot
 * alike on plain backgrounds.
 */
export const NEAR_DUPLICATE_SIMILARITY = 0.85;
/** Photos an audit needs per class at least: one per fold, and two folds' worth to train on. */
export const MIN_PHOTOS_PER_CLASS = 5;
/** Folds when none are asked for. */
export const DEFAULT_AUDIT_FOLDS = 10;
export const LABEL_ISSUE_METHOD =
  'as many photos as labels are estimated wrong (the smaller of the confident joint of Northcutt et al. 2021 and a mixture estimate on self-confidence plus its standard deviation), those with the lowest out-of-sample probability of their given label';

/** Fills the defaults. @throws RangeError naming the bad field. */
export function resolveAuditOptions(o: AuditOptions = {}): ResolvedAuditOptions {
  const r: ResolvedAuditOptions = {
    folds: o.folds ?? DEFAULT_AUDIT_FOLDS,
    duplicateThreshold: o.duplicateThreshold ?? NEAR_DUPLICATE_SIMILARITY,
    outlierNeighbours: o.outlierNeighbours ?? 5,
    outlierZ: o.outlierZ ?? 3.5,
    ...(o.parallel ? { parallel: o.parallel } : {}),
  };
  if (!Number.isInteger(r.folds) || r.folds < 2 || r.folds > 20) throw new RangeError(`audit folds must be an integer from 2 to 20, got ${r.folds}`);
  if (!(r.duplicateThreshold > 0 && r.duplicateThreshold <= 1)) throw new RangeError(`duplicate threshold must be in (0, 1], got ${r.duplicateThreshold}`);
  if (!Number.isInteger(r.outlierNeighbours) || r.outlierNeighbours < 1 || r.outlierNeighbours > 50)
    throw new RangeError(`outlier neighbours must be an integer from 1 to 50, got ${r.outlierNeighbours}`);
  if (!(r.outlierZ > 0)) throw new RangeError(`outlier z must be > 0, got ${r.outlierZ}`);
  return r;
}

/** Photos per class index. */
export function photosPerClass(labels: ArrayLike<number>, C: number): number[] {
  const counts = new Array<number>(C).fill(0);
  for (let i = 0; i < labels.length; i++) counts[labels[i]]++;
  return counts;
}

/** Why a set with these photos per class cannot be audited (too few of a class for the folds), or undefined when it can. */
export function auditProblem(classes: readonly string[], counts: readonly number[], folds: number): string | undefined {
  const need = Math.max(MIN_PHOTOS_PER_CLASS, folds);
  const small = classes.map((c, i) => [c, counts[i] ?? 0] as const).filter(([, n]) => n < need);
  if (classes.length < 2) return 'an audit needs at least 2 classes';
  if (small.length === 0) return undefined;
  const shown = small
    .slice(0, 5)
    .map(([c, n]) => `${c} (${n})`)
    .join(', ');
  return `too small to audit: ${small.length} class${small.length > 1 ? 'es have' : ' has'} fewer than ${need} photos with vectors (${shown}${small.length > 5 ? ', ...' : ''}); an audit trains ${folds} heads, each judging photos it never saw, and needs ${need} photos per class`;
}

/** What an audit is doing, for progress. */
export type AuditStage = 'folds' | 'duplicates' | 'outliers';

/**
 * Audits a labelled set of cached vectors.
 * @throws RangeError when it is too small (auditProblem); Stopped when asked to stop between folds.
 */
export async function auditDataset(
  input: AuditInput,
  options: AuditOptions = {},
  hooks: FoldHooks & { onStage?: (s: AuditStage) => void } = {},
): Promise<AuditReport> {
  const t0 = performance.now();
  const o = resolveAuditOptions(options);
  const { photos, classes, dim } = input;
  const C = classes.length;
  const labels = photos.map((p) => p.label);
  const problem = auditProblem(classes, photosPerClass(labels, C), o.folds);
  if (problem) throw new RangeError(problem);
  hooks.onStage?.('folds');
  const probs = await outOfSampleProbabilities(input.vectors, labels, dim, classes, o.folds, input.options, {
    ...hooks,
    parallel: hooks.parallel ?? o.parallel,
  });
  const cl = findLabelIssues(probs, labels, C);
  const labelIssues: LabelIssue[] = cl.flagged.map((i, r) => ({
    ...refOf(photos[i], classes),
    suggested: classes[cl.suggested[r]],
    margin: cl.margins[r],
    selfConfidence: probs[i * C + labels[i]],
    suggestedProbability: probs[i * C + cl.suggested[r]],
  }));
  hooks.onStage?.('duplicates');
  const rows = unitRows(input.vectors, dim);
  const nn = await nearestNeighbours(rows, dim, DUPLICATE_NEIGHBOURS);
  const pairs = duplicatePairs(photos, nn, o.duplicateThreshold);
  hooks.onStage?.('outliers');
  const outliers = await findOutliers(photos, rows, dim, classes, o.outlierNeighbours, o.outlierZ);
  let correct = 0;
  for (let i = 0; i < photos.length; i++) if (argmax(probs, i * C, C) === labels[i]) correct++;
  return {
    formatVersion: 1,
    photos: photos.length,
    classes,
    options: o,
    method: LABEL_ISSUE_METHOD,
    labelIssues,
    estimatedErrors: cl.errorCounts.count,
    errorEstimates: { mixture: cl.errorCounts.mixture, confidentJoint: cl.errorCounts.confidentJoint, calibratedJoint: cl.errorCounts.calibratedJoint },
    outOfSampleAccuracy: correct / photos.length,
    duplicates: duplicateGroups(photos, pairs, classes),
    leaks: splitLeaks(photos, pairs, classes, input.predicted),
    outliers,
    seconds: (performance.now() - t0) / 1000,
    foldsRestored: hooks.done?.size ?? 0,
  };
}
