import type { AuditReport } from './audit-types.js';

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/** An audit in one screen: counts, then the first few of each finding. */
export function formatAudit(r: AuditReport, shown = 5): string {
  const dupPhotos = r.duplicates.reduce((a, g) => a + g.photos.length, 0);
  const lines = [
    `audit of ${r.photos} photos in ${r.classes.length} classes (${r.seconds.toFixed(1)} s, ${r.options.folds} folds${r.foldsRestored ? `, ${r.foldsRestored} restored` : ''}; out-of-sample accuracy ${pct(r.outOfSampleAccuracy)})`,
    `  likely label errors  ${r.labelIssues.length} flagged (labels estimated wrong: ${r.estimatedErrors})`,
    `  duplicates           ${r.duplicates.length} groups, ${dupPhotos} photos (${r.duplicates.filter((g) => g.kind === 'exact').length} exact, ${r.duplicates.filter((g) => g.conflictingLabels).length} with conflicting labels)`,
    `  split leaks          ${r.leaks.pairs.length} pairs across splits, ${r.leaks.leakedTestPhotos} test photos leaked`,
    `  outliers             ${r.outliers.length}`,
  ];
  const t = r.leaks.testAccuracy;
  if (t) lines.push(`  test accuracy        ${pct(t.all)} on ${t.testPhotos} photos; ${pct(t.withoutLeaked)} without the ${r.leaks.leakedTestPhotos} leaked`);
  if (r.labelIssues.length)
    lines.push(
      '',
      'likely label errors (given -> suggested, p(given)):',
      ...r.labelIssues.slice(0, shown).map((l) => `  ${l.path}  ${l.label} -> ${l.suggested}  ${l.selfConfidence.toFixed(3)}`),
    );
  if (r.duplicates.length)
    lines.push(
      '',
      'duplicates:',
      ...r.duplicates.slice(0, shown).map(
        (g) =>
          `  ${g.kind} ${g.similarity.toFixed(3)}: ${g.photos
            .slice(0, 4)
            .map((p) => `${p.path} (${p.label}, ${p.split})`)
            .join(', ')}${g.photos.length > 4 ? `, and ${g.photos.length - 4} more` : ''}`,
      ),
    );
  if (r.outliers.length) lines.push('', 'outliers (z):', ...r.outliers.slice(0, shown).map((o) => `  ${o.path}  ${o.label}  ${o.z.toFixed(1)}`));
  const more = r.labelIssues.length > shown || r.duplicates.length > shown || r.outliers.length > shown;
  if (more) lines.push('', `(the first ${shown} of each are shown: audit.json and report.html have them all)`);
  return lines.join('\n');
}
