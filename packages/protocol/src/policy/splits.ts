import { createHash } from 'node:crypto';
import { basename } from 'node:path';
import { Split, type ImageEntry, type TrainingOptions } from '../messages.js';

/*
 * graft's one split policy: the set names, the hold-out defaults, and which set an image is in.
 * The CLI (dry runs, counts) and the coordinator (training) call this same code, so they agree.
 */

/** retrain.py's constant: the hash space images are spread over. */
const MAX_NUM_IMAGES_PER_CLASS = 2 ** 27 - 1;

export type SplitName = 'train' | 'validation' | 'test';

/** Percent of images held out for validation, and for test, when a job does not say. */
export const DEFAULT_VALIDATION_PERCENT = 10;
export const DEFAULT_TEST_PERCENT = 10;

/** Percentages of images held out when a manifest does not fix an image's split. Default 10 and 10. */
export interface SplitPercents {
  validationPercent: number;
  testPercent: number;
}

/** A job's hold-out percentages: absent options take the defaults; 0 holds nothing out. */
export function splitPercents(t: TrainingOptions | null | undefined): SplitPercents {
  return { validationPercent: t?.validationPercent ?? DEFAULT_VALIDATION_PERCENT, testPercent: t?.testPercent ?? DEFAULT_TEST_PERCENT };
}

/**
 * What is wrong with a job's hold-out percentages (absent ones at their defaults), or undefined.
 * Each must be an integer 0..99 and together under 100, so some images are left to train on.
 */
export function splitPercentsProblem(t: Pick<TrainingOptions, 'validationPercent' | 'testPercent'> | null | undefined): string | undefined {
  const p = splitPercents(t as TrainingOptions);
  for (const [name, v] of [
    ['validation', p.validationPercent],
    ['test', p.testPercent],
  ] as const) {
    if (!Number.isInteger(v) || v < 0 || v > 99) return `the ${name} percentage must be an integer from 0 to 99, got ${v}`;
  }
  if (p.validationPercent + p.testPercent >= 100) return `validation + test percentages must be under 100, got ${p.validationPercent} + ${p.testPercent}`;
  return undefined;
}

/**
 * retrain.py's split: a stable hash of the file name (anything after `_nohash_` ignored),
 * so adding images never moves existing ones between sets.
 */
export function assignSplit(path: string, validationPercent = DEFAULT_VALIDATION_PERCENT, testPercent = DEFAULT_TEST_PERCENT): SplitName {
  const name = basename(path).replace(/_nohash_.*$/, '');
  const hex = createHash('sha1').update(name, 'utf8').digest('hex');
  const percentage = Number(BigInt(`0x${hex}`) % BigInt(MAX_NUM_IMAGES_PER_CLASS + 1)) * (100 / MAX_NUM_IMAGES_PER_CLASS);
  if (percentage < validationPercent) return 'validation';
  if (percentage < validationPercent + testPercent) return 'test';
  return 'train';
}

/**
 * An image's set: the one its manifest entry fixes (--splits), else {@link assignSplit}'s.
 * A pure function of the entry and the options, so every reader of a manifest agrees.
 */
export function splitOf(img: Pick<ImageEntry, 'path' | 'split'>, p: SplitPercents): SplitName {
  if (img.split === Split.SPLIT_TRAIN) return 'train';
  if (img.split === Split.SPLIT_VALIDATION) return 'validation';
  if (img.split === Split.SPLIT_TEST) return 'test';
  return assignSplit(img.path ?? '', p.validationPercent, p.testPercent);
}

/** The words lists and --splits files may use for a set (any case); unassigned or empty: none. */
const SPLIT_WORDS: Readonly<Record<string, Split>> = {
  train: Split.SPLIT_TRAIN,
  training: Split.SPLIT_TRAIN,
  validation: Split.SPLIT_VALIDATION,
  val: Split.SPLIT_VALIDATION,
  valid: Split.SPLIT_VALIDATION,
  test: Split.SPLIT_TEST,
  testing: Split.SPLIT_TEST,
  unassigned: Split.SPLIT_UNSPECIFIED,
  '': Split.SPLIT_UNSPECIFIED,
};

/** The split a value names (train, training, validation, val, valid, test, testing; unassigned or empty: none), or undefined. */
export function splitNamed(value: string): Split | undefined {
  return SPLIT_WORDS[value.trim().toLowerCase()];
}
