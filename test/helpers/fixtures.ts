import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root (test/dist/helpers -> ../../..). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const CLI = join(ROOT, 'packages', 'cli', 'dist', 'main.js');
/** ../shared beside the repository: present for developers and CI, absent in a fresh clone. */
export const SHARED = resolve(ROOT, '..', 'shared');

/** Why a test that needs ../shared/<sub> is skipped, or false when it can run. */
export function sharedSkip(sub: string): string | false {
  return existsSync(join(SHARED, sub)) ? false : `needs ../shared/${sub} (not present in a fresh clone)`;
}
