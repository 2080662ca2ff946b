import { isValidJobId, splitPercentsProblem, type DatasetManifest } from '@graft/protocol';
import {
  countSweepHeads,
  parseSweepGrid,
  resolveAuditOptions,
  resolveTrainOptions,
  pickTrainOptions,
  MAX_SUGGEST,
  MAX_TOP_K,
  MAX_SWEEP_HEADS,
  MAX_SWEEP_EPOCHS,
} from '@graft/head';
import { MAX_AUGMENT_COPIES, parseAugmentSpec } from '@graft/vision';
import { MAX_ENTRY_TEXT, type ManifestEntries, type JobManifest } from '../tracking/manifest-entries.js';
import { SHA256_HEX } from '../tracking/sha-index.js';

/** A manifest that cannot be run, with every problem listed. */
export class ManifestError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid manifest: ${problems.slice(0, 10).join('; ')}${problems.length > 10 ? `; and ${problems.length - 10} more` : ''}`);
    this.name = 'ManifestError';
  }
}

/** Bounds on what one manifest may ask for: beyond them it is refused, never half-run. */
export const MANIFEST_LIMITS = {
  classes: 100_000,
  /** Characters of a class name, a path or a list source. */
  text: MAX_ENTRY_TEXT,
  name: 1000,
} as const;

/**
 * The job id a manifest's subject names (`graft.manifests.<job>`), checked against the manifest's
 * own: a manifest can only start the job it was published for.
 * @returns a reason to refuse it, or undefined.
 */
export function subjectProblem(subject: string, m: Pick<DatasetManifest, 'jobId'>): string | undefined {
  const subjectId = subject.split('.').pop() ?? '';
  if (!isValidJobId(m.jobId))
    return `job id ${JSON.stringify(m.jobId.slice(0, 80))}${m.jobId.length > 80 ? ` (${m.jobId.length} characters)` : ''} is not valid: use up to 64 letters, digits, '-' and '_'`;
  if (subjectId !== m.jobId)
    return `published on ${JSON.stringify(subject.slice(0, 120))} but names job ${m.jobId}: a manifest starts only the job its subject names`;
  return undefined;
}

/**
 * Checks what the coordinator relies on: the header, and the entries as their list found them
 * (read from the manifest's pages, or from its own list when it has no pages).
 * @throws ManifestError listing the problems.
 */
export function validateManifest(m: JobManifest, list: ManifestEntries): void {
  const problems: string[] = [];
  if (!isValidJobId(m.jobId)) problems.push(`job id ${JSON.stringify(m.jobId)} is not valid`);
  if (m.classes.length < 2) problems.push(`needs at least 2 classes, has ${m.classes.length}`);
  if (new Set(m.classes).size !== m.classes.length) problems.push('class names repeat');
  if (list.length === 0) problems.push('has no images');
  if (m.classes.length > MANIFEST_LIMITS.classes) problems.push(`has ${m.classes.length} classes, over ${MANIFEST_LIMITS.classes}`);
  if ((m.name ?? '').length > MANIFEST_LIMITS.name) problems.push(`its name has ${m.name.length} characters, over ${MANIFEST_LIMITS.name}`);
  for (const c of m.classes)
    if (!c || c.length > MANIFEST_LIMITS.text)
      problems.push(`class name ${JSON.stringify(c.slice(0, 80))} is empty or over ${MANIFEST_LIMITS.text} characters`);
  problems.push(...list.problems);
  // A prediction job's photos are unlabelled: its classes are the head's answers, not the photos'.
  if (!m.predict)
    m.classes.forEach((c, i) => {
      if (!list.perClass[i]) problems.push(`class ${JSON.stringify(c.slice(0, 80))} has no images`);
    });
  if (!m.backbone?.url && !m.backbone?.id) problems.push('names no backbone');
  const upload = m.backbone?.uploadSha256;
  if (upload && (!SHA256_HEX.test(upload) || !m.backbone?.url?.startsWith('file:')))
    problems.push(`backbone upload ${JSON.stringify(upload.slice(0, 80))} is not a SHA-256 standing for a file:// model`);
  const t = m.training;
  const splits = splitPercentsProblem(t);
  if (splits) problems.push(splits);
  problems.push(...(m.predict ? predictProblems(m) : trainingProblems(m)));
  if (t?.augment) {
    try {
      if (parseAugmentSpec(t.augment) !== t.augment)
        problems.push(`augmentation ${JSON.stringify(t.augment)} is not in canonical form (${parseAugmentSpec(t.augment)})`);
    } catch (err) {
      problems.push((err as Error).message);
    }
    const k = t.augmentCopies ?? 0;
    if (!Number.isInteger(k) || k < 1 || k > MAX_AUGMENT_COPIES) problems.push(`augmented copies must be 1 to ${MAX_AUGMENT_COPIES}, got ${k}`);
  }
  if (problems.length) throw new ManifestError(problems);
}

/** What is wrong with a prediction job's options: a stored head by its hash, top-k and suggestions in range, nothing to train. */
function predictProblems(m: JobManifest): string[] {
  const p = m.predict!;
  const problems: string[] = [];
  if (!SHA256_HEX.test(p.headSha256 ?? '')) problems.push(`predict: head ${JSON.stringify((p.headSha256 ?? '').slice(0, 80))} is not a SHA-256`);
  if (!Number.isInteger(p.topK) || p.topK! < 1 || p.topK! > MAX_TOP_K) problems.push(`predict: top-k must be 1 to ${MAX_TOP_K}, got ${p.topK}`);
  if (!Number.isInteger(p.suggest ?? 0) || (p.suggest ?? 0) > MAX_SUGGEST) problems.push(`predict: at most ${MAX_SUGGEST} suggestions, asked for ${p.suggest}`);
  if ((p.model ?? '').length > MANIFEST_LIMITS.name) problems.push(`predict: model name over ${MANIFEST_LIMITS.name} characters`);
  const t = m.training;
  if (t?.sweep || t?.audit || t?.augment) problems.push('predict: a prediction job trains nothing (no sweep, audit or augmentation)');
  return problems;
}

/**
 * What is wrong with a manifest's training options and sweep grid, checked when it arrives (not
 * after extraction): every option in range, and a sweep bounded in heads and in heads x epochs, so
 * no manifest can ask for more training than a coordinator can do.
 */
function trainingProblems(m: JobManifest): string[] {
  const t = m.training;
  const problems: string[] = [];
  let epochs = 0;
  try {
    epochs = resolveTrainOptions(pickTrainOptions(t), Math.max(1, m.classes.length)).epochs;
  } catch (err) {
    problems.push(`training options: ${(err as Error).message}`);
  }
  if (t?.audit) {
    try {
      resolveAuditOptions({ folds: t.auditFolds ?? undefined });
    } catch (err) {
      problems.push(`audit options: ${(err as Error).message}`);
    }
  }
  if (!t?.sweep) return problems;
  try {
    const grid = t.sweepGrid ? parseSweepGrid(t.sweepGrid, 'the sweep grid') : undefined;
    const heads = grid ? countSweepHeads(grid) : 0;
    if (heads > MAX_SWEEP_HEADS) problems.push(`the sweep grid asks for ${heads.toExponential(2)} heads, over ${MAX_SWEEP_HEADS}`);
    else if (heads * epochs > MAX_SWEEP_EPOCHS)
      problems.push(`the sweep grid asks for ${heads} heads x ${epochs} epochs, over ${MAX_SWEEP_EPOCHS} epochs in all`);
  } catch (err) {
    problems.push((err as Error).message);
  }
  return problems;
}
