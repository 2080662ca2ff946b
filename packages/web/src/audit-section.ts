import type { AuditRef, AuditReport } from '@graft/head';

/* report.html's Audit section: label issues, duplicate groups, leaked pairs and outliers, with thumbnails. */

/** Findings of each kind shown with photos (audit.json has them all). */
export const AUDIT_SHOWN = 24;

const esc = (s: unknown) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/** The photos whose thumbnails the Audit section shows. */
export function auditThumbnailsWanted(a: AuditReport): string[] {
  const refs: AuditRef[] = [
    ...a.labelIssues.slice(0, AUDIT_SHOWN),
    ...a.duplicates.slice(0, AUDIT_SHOWN).flatMap((g) => g.photos.slice(0, 6)),
    ...a.leaks.pairs.slice(0, AUDIT_SHOWN).flatMap((p) => [p.a, p.b]),
    ...a.outliers.slice(0, AUDIT_SHOWN),
  ];
  return [...new Set(refs.map((r) => r.sha256))];
}

function photo(r: AuditRef, caption: string, thumbs: ReadonlyMap<string, string>): string {
  const src = thumbs.get(r.sha256);
  const title = `${r.path} · ${r.label} · ${r.split}`;
  return src
    ? `<figure class="thumb"><img src="${src}" alt="${esc(r.path)}" title="${esc(title)}"><figcaption>${esc(caption)}</figcaption></figure>`
    : `<figure class="thumb missing" title="${esc(title)}"><span>${esc(r.path.split('/').pop())}</span></figure>`;
}

function more(total: number): string {
  return total > AUDIT_SHOWN ? `<p class="muted">and ${total - AUDIT_SHOWN} more in audit.json</p>` : '';
}

/** The section, or '' when the model has no audit. */
export function auditSection(a: AuditReport | undefined, thumbs: ReadonlyMap<string, string>): string {
  if (!a) return '';
  const issues = a.labelIssues
    .slice(0, AUDIT_SHOWN)
    .map(
      (l) =>
        `<div class="finding label-issue">${photo(l, `${l.label} → ${l.suggested}`, thumbs)}<div class="muted">given ${pct(l.selfConfidence)}<br>${esc(l.suggested)} ${pct(l.suggestedProbability)}</div></div>`,
    )
    .join('');
  const groups = a.duplicates
    .slice(0, AUDIT_SHOWN)
    .map(
      (g) =>
        `<div class="pair duplicate"><h3>${g.kind} duplicates <span class="muted">${g.photos.length} photos, similarity ≥ ${g.similarity.toFixed(3)}${g.conflictingLabels ? ', <b>conflicting labels</b>' : ''}</span></h3><div class="thumbs">${g.photos
          .slice(0, 6)
          .map((p) => photo(p, `${p.label} · ${p.split}`, thumbs))
          .join('')}</div></div>`,
    )
    .join('');
  const leaks = a.leaks.pairs
    .slice(0, AUDIT_SHOWN)
    .map(
      (p) =>
        `<div class="pair leak"><h3>${esc(p.a.split)} ↔ ${esc(p.b.split)} <span class="muted">${p.kind}, ${p.similarity.toFixed(3)}</span></h3><div class="thumbs">${photo(p.a, `${p.a.label} · ${p.a.split}`, thumbs)}${photo(p.b, `${p.b.label} · ${p.b.split}`, thumbs)}</div></div>`,
    )
    .join('');
  const outliers = a.outliers
    .slice(0, AUDIT_SHOWN)
    .map((o) => `<div class="finding outlier">${photo(o, o.label, thumbs)}<div class="muted">z ${o.z.toFixed(1)}</div></div>`)
    .join('');
  const t = a.leaks.testAccuracy;
  const leakNote = t
    ? ` Test accuracy ${pct(t.all)} on ${t.testPhotos} photos, ${pct(t.withoutLeaked)} without the ${a.leaks.leakedTestPhotos} leaked ones.`
    : '';
  return (
    `<section id="audit"><h2>Audit <span class="muted">(${a.photos} photos, ${a.options.folds} folds, ${a.seconds.toFixed(1)} s, from the cached vectors; ${esc(a.method)})</span></h2>` +
    `<h3 id="audit-label-issues">Likely label errors: ${a.labelIssues.length} <span class="muted">(out-of-sample accuracy ${pct(a.outOfSampleAccuracy)}; given → suggested)</span></h3><div class="thumbs">${issues || '<span class="muted">none</span>'}</div>${more(a.labelIssues.length)}` +
    `<h3 id="audit-duplicates">Duplicates: ${a.duplicates.length} groups</h3><div class="pairs">${groups || '<span class="muted">none</span>'}</div>${more(a.duplicates.length)}` +
    `<h3 id="audit-leaks">Split leaks: ${a.leaks.pairs.length} pairs <span class="muted">${leakNote}</span></h3><div class="pairs">${leaks || '<span class="muted">none</span>'}</div>${more(a.leaks.pairs.length)}` +
    `<h3 id="audit-outliers">Outliers: ${a.outliers.length} <span class="muted">(far from every photo of their class)</span></h3><div class="thumbs">${outliers || '<span class="muted">none</span>'}</div>${more(a.outliers.length)}` +
    `</section>`
  );
}
