import type { EpochResult } from './train.js';
import { argmax, rankOf } from './argmax.js';

/** A test image the head got wrong: what report.html shows with its thumbnail. */
export interface Misclassified {
  sha256: string;
  /** As the dataset names it (path or URL). */
  path: string;
  actual: string;
  predicted: string;
  /** The head's probability for the predicted class. */
  probability: number;
}

/** Test-set quality of a head: what report.json holds. */
export interface EvaluationReport {
  top1: number;
  /** The share of test photos whose class is among the `topK` most probable. */
  topKAccuracy: number;
  /** k of topKAccuracy: min(5, classes). */
  topK: number;
  images: number;
  classes: string[];
  /** Per class: test images, test accuracy, and the training images it had (so an imbalance shows). */
  perClass: { label: string; images: number; accuracy: number; trainImages?: number }[];
  /** confusion[actual][predicted] counts. */
  confusion: number[][];
  /** Images per split (a job's report; absent in a bare evaluation). */
  splits?: { train: number; validation: number; test: number; augmented?: number };
  /** Loss and accuracy per epoch, train and validation (a job's report). */
  history?: EpochResult[];
  /** The test images the head got wrong, most confident first (at most {@link MAX_MISCLASSIFIED}). */
  misclassified?: Misclassified[];
  /**
   * graft predict --min-confidence P: at each threshold, the share of photos whose top class is at
   * least that probable (answered; the rest would be "unknown") and the accuracy on those. Chosen on
   * the validation set (a job's report), checked on the test set.
   */
  coverage?: { validation?: CoveragePoint[]; test: CoveragePoint[] };
  /** A sweep's heads, the winner (the exported head, best on validation) and the sweep's time. */
  sweep?: { heads: SweepRow[]; winner: string; seconds: number; parallel: number };
}

/** One threshold of the coverage curve. */
export interface CoveragePoint {
  threshold: number;
  /** Share of the test photos answered (top-1 probability at least the threshold). */
  answered: number;
  /** Top-1 accuracy on those answered (0 when none is). */
  accuracy: number;
}

/** The thresholds of the coverage curve. */
export const COVERAGE_THRESHOLDS = [0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99] as const;

/** The coverage curve of these predictions (see {@link EvaluationReport.coverage}). */
export function coverageCurve(probabilities: readonly Float32Array[], labels: readonly number[]): CoveragePoint[] {
  const top = labels.map((_, i) => {
    const c = argmax(probabilities[i]);
    return { p: probabilities[i][c], right: c === labels[i] };
  });
  return COVERAGE_THRESHOLDS.map((threshold) => {
    const kept = top.filter((t) => t.p >= threshold);
    return {
      threshold,
      answered: top.length ? kept.length / top.length : 0,
      accuracy: kept.length ? kept.filter((t) => t.right).length / kept.length : 0,
    };
  });
}

/** One head of a sweep, as the report lists it. */
export interface SweepRow {
  id: string;
  optimizer: string;
  learningRate: number;
  batchSize: number;
  weightDecay: number;
  labelSmoothing: number;
  hiddenUnits: number;
  dropout: number;
  valAccuracy: number;
  valLoss: number;
  bestEpoch: number;
  epochs: number;
  seconds: number;
  /** Trained by a coordinator before a takeover, and read back. */
  restored?: boolean;
}

/** Wrong test images kept in a report: enough for every confused pair at 101 classes, small in JSON. */
export const MAX_MISCLASSIFIED = 2000;

/**
 * The test images predictions got wrong, most confident first.
 * images[i] names test image i (sha256 and path), labels[i] its class.
 */
export function misclassifiedOf(
  probabilities: Float32Array[],
  labels: number[],
  classes: string[],
  images: { sha256: string; path: string }[],
): Misclassified[] {
  const wrong: Misclassified[] = [];
  for (let i = 0; i < labels.length; i++) {
    const p = probabilities[i];
    let best = 0;
    for (let c = 1; c < p.length; c++) if (p[c] > p[best]) best = c;
    if (best !== labels[i]) wrong.push({ ...images[i], actual: classes[labels[i]], predicted: classes[best], probability: p[best] });
  }
  return wrong.sort((a, b) => b.probability - a.probability).slice(0, MAX_MISCLASSIFIED);
}

/**
 * Scores predictions: probabilities[i] for image i with true class labels[i].
 * With no images every figure is 0 (and `images` says so).
 */
export function evaluatePredictions(probabilities: Float32Array[], labels: number[], classes: string[], trainLabels?: readonly number[]): EvaluationReport {
  const trainCounts = trainLabels ? classes.map(() => 0) : undefined;
  for (const c of trainLabels ?? []) trainCounts![c]++;
  const C = classes.length;
  const k = Math.min(5, C);
  const confusion = classes.map(() => new Array<number>(C).fill(0));
  let top1 = 0;
  let topk = 0;
  for (let i = 0; i < labels.length; i++) {
    const p = probabilities[i];
    const predicted = argmax(p);
    confusion[labels[i]][predicted]++;
    if (predicted === labels[i]) top1++;
    if (rankOf(p, labels[i]) < k) topk++;
  }
  const n = labels.length;
  return {
    top1: n ? top1 / n : 0,
    topKAccuracy: n ? topk / n : 0,
    topK: k,
    images: n,
    classes,
    perClass: classes.map((label, c) => {
      const row = confusion[c].reduce((a, b) => a + b, 0);
      return { label, images: row, accuracy: row ? confusion[c][c] / row : 0, ...(trainCounts ? { trainImages: trainCounts[c] } : {}) };
    }),
    confusion,
    coverage: { test: coverageCurve(probabilities, labels) },
  };
}

/** A few lines a person reads at the end of a run. */
export function formatReport(r: EvaluationReport): string {
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  // An accuracy over 0 images is no accuracy: say there were none instead of printing 0.0 %.
  const lines = [
    r.images
      ? `test accuracy: top-1 ${pct(r.top1)}, top-${r.topK} ${pct(r.topKAccuracy)} on ${r.images} images`
      : 'test accuracy: no test images (give some with --test-percent or --splits)',
  ];
  const width = Math.max(...r.classes.map((c) => c.length));
  for (const c of r.perClass)
    lines.push(
      `  ${c.label.padEnd(width)}  ${c.images ? pct(c.accuracy).padStart(6) : '     -'}  (${c.images} test image${c.images === 1 ? '' : 's'}${c.trainImages !== undefined ? `; trained on ${c.trainImages}` : ''})`,
    );
  return lines.join('\n');
}

/** A sweep's table, best first, for the end of a run. */
export function formatSweep(sweep: NonNullable<EvaluationReport['sweep']>): string {
  const rows = [...sweep.heads].sort((a, b) => b.valAccuracy - a.valAccuracy || a.valLoss - b.valLoss);
  const lines = [`sweep: ${sweep.heads.length} heads in ${sweep.seconds.toFixed(1)} s (${sweep.parallel} at a time), no backbone call; the winner is exported`];
  lines.push('  val acc  val loss  optimizer  lr       L2      smooth  batch  hidden    epochs');
  for (const r of rows) {
    const hidden = r.hiddenUnits ? `${r.hiddenUnits}/${r.dropout}` : '-';
    lines.push(
      `  ${(100 * r.valAccuracy).toFixed(1).padStart(6)}%  ${r.valLoss.toFixed(3).padStart(8)}  ${r.optimizer.padEnd(9)}  ${String(r.learningRate).padEnd(7)}  ${String(r.weightDecay).padEnd(6)}  ${String(r.labelSmoothing).padEnd(6)}  ${String(r.batchSize).padStart(5)}  ${hidden.padEnd(8)}  ${String(r.epochs).padStart(6)}${r.id === sweep.winner ? '  <- winner' : ''}${r.restored ? ' (restored)' : ''}`,
    );
  }
  return lines.join('\n');
}
