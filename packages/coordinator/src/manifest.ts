import { isValidJobId, splitPercentsProblem, type DatasetManifest } from '@graft/protocol';
import { MAX_AUGMENT_COPIES, parseAugmentSpec } from '@graft/vision';

/** A manifest that cannot be run, with every problem listed. */
export class ManifestError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid manifest: ${problems.slice(0, 10).join('; ')}${problems.length > 10 ? `; and ${problems.length - 10} more` : ''}`);
    this.name = 'ManifestError';
  }
}

const SHA256 = /^[0-9a-f]{64}$/;

/** Checks what the coordinator relies on. @throws ManifestError listing the problems. */
export function validateManifest(m: DatasetManifest): void {
  const problems: string[] = [];
  if (!isValidJobId(m.jobId)) problems.push(`job id ${JSON.stringify(m.jobId)} is not valid`);
  if (m.classes.length < 2) problems.push(`needs at least 2 classes, has ${m.classes.length}`);
  const classes = new Set(m.classes);
  if (classes.size !== m.classes.length) problems.push('class names repeat');
  if (m.images.length === 0) problems.push('has no images');
  const paths = new Set<string>();
  const perClass = new Map<string, number>();
  for (const img of m.images) {
    if (!classes.has(img.label)) problems.push(`${img.path}: unknown class ${JSON.stringify(img.label)}`);
    if (!SHA256.test(img.sha256)) problems.push(`${img.path}: bad sha256 ${JSON.stringify(img.sha256)}`);
    if (paths.has(img.path)) problems.push(`${img.path}: listed twice`);
    paths.add(img.path);
    perClass.set(img.label, (perClass.get(img.label) ?? 0) + 1);
  }
  for (const c of m.classes) if (!perClass.get(c)) problems.push(`class ${JSON.stringify(c)} has no images`);
  if (!m.backbone?.url && !m.backbone?.id) problems.push('names no backbone');
  const t = m.training;
  const splits = splitPercentsProblem(t);
  if (splits) problems.push(splits);
  if (t?.augment) {
    try {
      if (parseAugmentSpec(t.augment) !== t.augment) problems.push(`augmentation ${JSON.stringify(t.augment)} is not in canonical form (${parseAugmentSpec(t.augment)})`);
    } catch (err) {
      problems.push((err as Error).message);
    }
    const k = t.augmentCopies ?? 0;
    if (!Number.isInteger(k) || k < 1 || k > MAX_AUGMENT_COPIES) problems.push(`augmented copies must be 1 to ${MAX_AUGMENT_COPIES}, got ${k}`);
  }
  if (problems.length) throw new ManifestError(problems);
}
