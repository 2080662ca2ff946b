// BENCHMARKS.md's audit section (bench/audit.mjs).
import { f, mark, pct } from './format.mjs';

export function auditSection(a, out) {
  const d = a.duplicates;
  const ten = a.noise.find((n) => n.fraction === 0.1);
  const lines = [
    '## Audit: label errors, near-copies, leaks',
    '',
    `\`graft audit\` on ${out.data} with its splits and ${a.backbone ?? 'the shared MobileNetV2-0.35'} (two workers, ${a.folds} folds, the default head). Labels of ${a.noise.map((n) => pct(n.fraction)).join(', ')} of the training photos flipped to another class at random (seed 11); 100 near-copies of photos (in turn re-encoded at quality 55, resized to 60 %, flipped, cropped by 10 %) put in another split than their original${out.sectionDates?.audit ? ` (measured on ${out.sectionDates.audit})` : ''}.`,
    'Precision counts every flagged photo that was not flipped as wrong, so photos clothing-small itself mislabels, and its look-alike classes (shirt, t-shirt, longsleeve), count against it; the last column counts the photos the audit also flags with the original labels as not wrong.',
    '',
    '| labels flipped | flagged by the audit | precision | recall | audit time (2 cores) | backbone calls | test top-1 | flagged with the original labels too; precision without them |',
    '|---|---|---|---|---|---|---|---|',
    ...a.noise.map(
      (n) =>
        `| ${pct(n.fraction)} (${n.flipped} photos) | ${n.audit.flagged} | ${f(n.audit.precision)} | ${f(n.audit.recall)} | ${f(n.audit.seconds, 1)} s | ${n.backboneCalls} | ${pct(n.top1)} | ${n.audit.alsoFlaggedWithOriginalLabels}; ${f(n.audit.precisionWithoutThose)} |`,
    ),
    '',
    ...(a.noise.every((n) => n.estimates)
      ? [
          "How many labels are wrong, estimated from the same out-of-sample probabilities (`graft audit` counts the smaller of the confident joint's count and the mixture estimate plus its standard deviation plus one; packages/head/src/audit/error-count.ts):",
          '',
          '| labels flipped | graft audit counts | mixture estimate on self-confidence | confident joint, off-diagonal | calibrated joint, off-diagonal |',
          '|---|---|---|---|---|',
          ...a.noise.map(
            (n) =>
              `| ${pct(n.fraction)} (${n.flipped}) | ${n.estimates.count} | ${n.estimates.mixture} | ${n.estimates.confidentJoint} | ${n.estimates.calibratedJoint} |`,
          ),
          '',
        ]
      : []),
    "The same out-of-sample probabilities, each way of flagging (the first is `graft audit`'s); the reference needs no confident learning:",
    '',
    '| labels flipped | method | flagged | precision | recall |',
    '|---|---|---|---|---|',
    ...a.noise.flatMap((n) => n.table.map((r) => `| ${pct(n.fraction)} | ${r.method} | ${r.flagged} | ${f(r.precision)} | ${f(r.recall)} |`)),
    '',
    `Near-copies: ${d.copies} injected; recall ${f(d.recall)} (copies found in their original's group), precision ${f(d.precision)} (${d.groups} duplicate groups, those holding a copy); leaks: recall ${f(d.leakRecall)}, precision ${f(d.leakPrecision)} of ${d.leakedPairs} pairs across splits. Threshold ${d.threshold} (centered cosine); copies score at least ${f(d.similarities.min, 3)} (5th percentile ${f(d.similarities.p05, 3)}, median ${f(d.similarities.median, 3)}; lowest by kind: ${Object.entries(
      d.similarities.minByKind,
    )
      .map(([k, v]) => `${k} ${f(v, 3)}`)
      .join(', ')}).`,
    d.testAccuracy
      ? `Test accuracy with the leaked copies ${pct(d.testAccuracy.all)} on ${d.testAccuracy.testPhotos} photos, ${pct(d.testAccuracy.withoutLeaked)} without them.`
      : '',
    '',
    '| threshold | near pairs | copy recall | pair precision |',
    '|---|---|---|---|',
    ...d.thresholds.map((t) => `| ${t.threshold} | ${t.pairs} | ${f(t.recall)} | ${f(t.precision)} |`),
    '',
  ];
  if (ten) {
    lines.push(
      `Retraining without the flagged photos (10 % flipped): test top-1 ${pct(ten.top1)} with the noise, ${pct(ten.cleanedTop1)} without the ${ten.cleanedLeftOut} flagged training and validation photos (the test set unchanged), ${pct(ten.cleanTop1)} with clean labels: ${ten.recovered === undefined ? 'n/a' : pct(ten.recovered)} of what the noise cost recovered (${ten.cleanedBackboneCalls} backbone calls).`,
      '',
      `Targets (10 % flipped): precision >= 0.80 at recall >= 0.80: ${f(ten.audit.precision)} at ${f(ten.audit.recall)}, ${mark(ten.audit.precision >= 0.8 && ten.audit.recall >= 0.8)}; near-copies recall >= 0.95 with precision >= 0.90: ${f(d.recall)} / ${f(d.precision)}, ${mark(d.recall >= 0.95 && d.precision >= 0.9)}; an audit under 60 s on 2 cores: ${f(ten.audit.seconds, 1)} s, ${mark(ten.audit.seconds < 60)}; 0 backbone calls: ${ten.backboneCalls}, ${mark(ten.backboneCalls === 0)}; at least half the accuracy recovered: ${ten.recovered === undefined ? 'n/a' : pct(ten.recovered)}, ${mark((ten.recovered ?? 0) >= 0.5)}.`,
      '',
    );
  }
  return lines;
}
