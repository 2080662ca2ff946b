import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './fixtures.js';

/* The user's documentation: the README's tour and docs/, one topic per file. */

/** One file under docs/ (`architecture.md`), or the README (`README.md`). */
export function doc(name: string): string {
  return readFileSync(name === 'README.md' ? join(ROOT, name) : join(ROOT, 'docs', name), 'utf8');
}

/** The README and every file under docs/, in one text: what a user can read. */
export function allDocs(): string {
  const files = readdirSync(join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .sort();
  return [doc('README.md'), ...files.map(doc)].join('\n\n');
}

/** A section of a document, from its heading to the next heading of its level or above. */
export function section(text: string, heading: string): string {
  const start = text.indexOf(`\n${heading}\n`);
  if (start < 0) throw new Error(`no section "${heading}"`);
  const level = heading.match(/^#+/)![0].length;
  const rest = text.slice(start + heading.length + 2);
  const next = rest.search(new RegExp(`\\n#{1,${level}} `));
  return next < 0 ? rest : rest.slice(0, next);
}
