import type { TrainOptions } from '../options.js';
import type { VectorRow } from '../rows.js';

/* What an audit reads and what it finds. */

import type { SplitName } from '@graft/protocol/wire';

export type { SplitName };

/** One labelled photo of a job, with its cached vector's row in AuditInput.vectors. */
export interface AuditPhoto {
  sha256: string;
  path: string;
  /** Index into classes. */
  label: number;
  split: SplitName;
}

export interface AuditInput {
  dim: number;
  classes: string[];
  /** Parallel to vectors. */
  photos: AuditPhoto[];
  vectors: VectorRow[];
  /** The job's head options: every fold head trains with them (seeded). */
  options: TrainOptions;
  /** The job's trained head's prediction for each photo (class index), -1 where it has none: test accuracy with and without leaked photos. */
  predicted?: Int32Array;
}

/** Tunables with their defaults (resolveAuditOptions). */
export interface AuditOptions {
  /** Folds of the out-of-sample probabilities, 2 to 20. Default 10 (on clothing-small with 10 % of labels flipped, 10 folds flag with higher precision and recall than 5: BENCHMARKS.md). */
  folds?: number;
  /** Centered cosine similarity at or above which two photos are near-duplicates, in (0, 1]. Default NEAR_DUPLICATE_SIMILARITY. */
  duplicateThreshold?: number;
  /** Same-class neighbours an outlier score averages over. Default 5. */
  outlierNeighbours?: number;
  /** Robust z-score (median and MAD of its class) at or above which a photo is an outlier. Default 3.5. */
  outlierZ?: number;
  /** Heads trained at once (worker threads). Default: one per core for single-threaded backends. */
  parallel?: number;
}

export type ResolvedAuditOptions = Required<Omit<AuditOptions, 'parallel'>> & { parallel?: number };

/** A photo as the report names it. */
export interface AuditRef {
  path: string;
  sha256: string;
  label: string;
  split: SplitName;
}

export interface LabelIssue extends AuditRef {
  suggested: string;
  /** Normalized margin: p(given) - max p(other), in [-1, 1]; lower is more likely wrong. */
  margin: number;
  /** Out-of-sample probability of the given label. */
  selfConfidence: number;
  /** Out-of-sample probability of the suggested label. */
  suggestedProbability: number;
}

export interface DuplicateGroup {
  kind: 'exact' | 'near';
  /** Lowest similarity of a linked pair in the group (1 for exact). */
  similarity: number;
  photos: AuditRef[];
  /** The group's photos do not all carry the same label. */
  conflictingLabels: boolean;
}

export interface LeakedPair {
  kind: 'exact' | 'near';
  similarity: number;
  a: AuditRef;
  b: AuditRef;
}

export interface Outlier extends AuditRef {
  /** 1 - mean centered cosine to its nearest photos of the same class. */
  distance: number;
  /** Robust z-score of distance within its class. */
  z: number;
}

export interface AuditReport {
  formatVersion: 1;
  photos: number;
  classes: string[];
  options: ResolvedAuditOptions;
  /** Which confident-learning variant flagged the label issues, and how the ranking was done. */
  method: string;
  labelIssues: LabelIssue[];
  /** How many labels are estimated wrong: as many photos are flagged (the smaller of the confident joint's count and the mixture estimate's upper bound). */
  estimatedErrors: number;
  /** Each estimate: the mixture on self-confidence, the confident joint's off-diagonal, and the calibrated joint's (shown, not used). */
  errorEstimates: { mixture: number; confidentJoint: number; calibratedJoint: number };
  /** Out-of-sample accuracy of the fold heads against the given labels. */
  outOfSampleAccuracy: number;
  duplicates: DuplicateGroup[];
  leaks: { pairs: LeakedPair[]; leakedTestPhotos: number; testAccuracy?: { all: number; withoutLeaked: number; testPhotos: number } };
  outliers: Outlier[];
  seconds: number;
  /** Folds taken from storage (a resumed audit), not trained in this run. */
  foldsRestored: number;
}
