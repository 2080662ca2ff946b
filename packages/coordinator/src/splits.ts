import { createHash } from 'node:crypto';
import { basename } from 'node:path';
import { Split, type ImageEntry, type TrainingOptions } from '@graft/protocol';

/** retrain.py's constant: the hash space images are spread over. */
const MAX_NUM_IMAGES_PER_CLASS = 2 ** 27 - 1;

export type SplitName = 'train' | 'validation' | 'test';

/** Percentages of images held out when a manifest does not fix an image's split. Default 10 and 10. */
export interface SplitPercents {
  validationPercent: number;
  testPercent: number;
}

/** A job's hold-out percentages: absent options take the defaults; 0 holds nothing out. */
export function splitPercents(t: TrainingOptions | null | undefined): SplitPercents {
  return { validationPercent: t?.validationPercent ?? 10, testPercent: t?.testPercent ?? 10 };
}

/**
 * retrain.py's split: a stable hash of the file name (anything after `_nohash_` ignored),
 * so adding images never moves existing ones between sets.
 */
export function assignSplit(path: string, validationPercent = 10, testPercent = 10): SplitName {
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
