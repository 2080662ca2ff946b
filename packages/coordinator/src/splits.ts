import { createHash } from 'node:crypto';
import { basename } from 'node:path';

/** retrain.py's constant: the hash space images are spread over. */
const MAX_NUM_IMAGES_PER_CLASS = 2 ** 27 - 1;

export type SplitName = 'train' | 'validation' | 'test';

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
