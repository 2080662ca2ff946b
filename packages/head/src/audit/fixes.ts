import type { AuditReport } from './audit-types.js';

/*
 * The fixes list an audit writes and a user edits: CSV with path, given label, suggested label and
 * reason, one photo per line. `graft train --exclude` drops the listed photos, `--relabel` gives
 * them the suggested label (an empty suggestion: the photo is dropped).
 */

export const FIXES_HEADER = 'path,given,suggested,reason';

export interface Fix {
  path: string;
  given: string;
  suggested: string;
  reason: string;
}

const quote = (s: string) => (/[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);

/** The fixes an audit suggests: label issues (with their suggestion), then the later copies of each duplicate group, then outliers. */
export function fixesOf(report: AuditReport): Fix[] {
  const out = new Map<string, Fix>();
  for (const l of report.labelIssues)
    out.set(l.path, { path: l.path, given: l.label, suggested: l.suggested, reason: `label issue (p(given) ${l.selfConfidence.toFixed(3)})` });
  for (const g of report.duplicates) {
    for (const p of g.photos.slice(1))
      if (!out.has(p.path)) out.set(p.path, { path: p.path, given: p.label, suggested: '', reason: `${g.kind} duplicate of ${g.photos[0].path}` });
  }
  for (const o of report.outliers)
    if (!out.has(o.path)) out.set(o.path, { path: o.path, given: o.label, suggested: '', reason: `outlier (z ${o.z.toFixed(1)})` });
  return [...out.values()];
}

export function formatFixes(fixes: readonly Fix[]): string {
  return `${[FIXES_HEADER, ...fixes.map((f) => [f.path, f.given, f.suggested, f.reason].map(quote).join(','))].join('\n')}\n`;
}

/** One CSV line's fields (RFC 4180 quoting). */
function fields(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') ((cur += '"'), i++);
      else if (ch === '"') quoted = false;
      else cur += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') (out.push(cur), (cur = ''));
    else cur += ch;
  }
  out.push(cur);
  return out;
}

/**
 * Reads a fixes file (as fixesOf wrote it, perhaps edited).
 * @throws RangeError naming the file and line of a bad row.
 */
export function parseFixes(text: string, origin: string): Fix[] {
  const lines = text.split(/\r?\n/);
  if (lines[0]?.replace(/^\uFEFF/, '').trim() !== FIXES_HEADER)
    throw new RangeError(`${origin}: the first line must be "${FIXES_HEADER}" (as graft audit --write-fixes writes it)`);
  const out: Fix[] = [];
  lines.slice(1).forEach((line, i) => {
    if (!line.trim()) return;
    const f = fields(line);
    if (f.length < 3 || !f[0]) throw new RangeError(`${origin}:${i + 2}: expected path,given,suggested,reason`);
    out.push({ path: f[0], given: f[1], suggested: f[2], reason: f[3] ?? '' });
  });
  return out;
}
