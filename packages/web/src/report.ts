import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AuditReport, EvaluationReport, Misclassified, ModelCard } from '@graft/head';
import { auditSection, auditThumbnailsWanted } from './audit-section.js';

/*
 * report.html: one self-contained file (inline CSS, JS and SVG, thumbnails as data URLs; it loads
 * nothing). Charts that need no interaction are SVG written here; the confusion matrix is drawn
 * by the page's script from the embedded figures, so it can be re-sorted.
 */

/** Confused pairs shown with their photos, and photos per pair. */
export const REPORT_PAIRS = 12;
export const PHOTOS_PER_PAIR = 8;

export interface ReportInput {
  report: EvaluationReport;
  card: ModelCard;
  /** Thumbnail data URLs by image SHA-256 (see thumbnailsWanted); missing ones show the image's name. */
  thumbnails?: ReadonlyMap<string, string>;
  /** The model's audit (audit.json), shown as its own section. */
  audit?: AuditReport;
}

export interface ConfusedPair {
  actual: string;
  predicted: string;
  count: number;
  /** Of the actual class's test images. */
  fraction: number;
  images: Misclassified[];
}

const SCRIPT = readFileSync(join(dirname(fileURLToPath(import.meta.url)), '..', 'assets', 'report.js'), 'utf8');
/** The page runs its own script and nothing else: the CSP names it by hash, no 'unsafe-inline'. */
const SCRIPT_HASH = `'sha256-${createHash('sha256').update(SCRIPT).digest('base64')}'`;

/** The most-confused (actual, predicted) pairs, most images first, with their wrong test images. */
export function confusedPairs(r: EvaluationReport, limit = REPORT_PAIRS): ConfusedPair[] {
  const pairs: ConfusedPair[] = [];
  r.confusion.forEach((row, a) => {
    const total = row.reduce((x, y) => x + y, 0);
    row.forEach((count, p) => {
      if (p !== a && count > 0) pairs.push({ actual: r.classes[a], predicted: r.classes[p], count, fraction: total ? count / total : 0, images: [] });
    });
  });
  pairs.sort((x, y) => y.count - x.count || y.fraction - x.fraction || x.actual.localeCompare(y.actual));
  const top = pairs.slice(0, limit);
  for (const pair of top)
    pair.images = (r.misclassified ?? []).filter((m) => m.actual === pair.actual && m.predicted === pair.predicted).slice(0, PHOTOS_PER_PAIR);
  return top;
}

/** Thumbnails report.html holds at most: every confused pair's photos can be asked for from the matrix. */
export const MAX_THUMBNAILS = 600;

/** The images whose thumbnails report.html shows: the confused pairs' (most confused first), then the audit's. */
export function thumbnailsWanted(r: EvaluationReport, audit?: AuditReport): string[] {
  const pairs = confusedPairs(r, Infinity).flatMap((p) => p.images.map((i) => i.sha256));
  return [...new Set([...pairs.slice(0, MAX_THUMBNAILS), ...(audit ? auditThumbnailsWanted(audit) : [])])];
}

const esc = (s: unknown) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
const pct = (x: number, digits = 1) => `${(100 * x).toFixed(digits)}%`;

/** Green for good, red for bad: a class's accuracy as a colour. */
function accuracyColour(a: number): string {
  const hue = Math.round(120 * Math.max(0, Math.min(1, a)));
  return `hsl(${hue}, 62%, 46%)`;
}

function perClassChart(r: EvaluationReport): string {
  const rows = [...r.perClass].sort((a, b) => a.accuracy - b.accuracy || a.label.localeCompare(b.label));
  const labelW = Math.min(260, 12 + 7.2 * Math.max(...rows.map((c) => c.label.length)));
  const barW = 420;
  const rowH = 20;
  const width = labelW + barW + 230;
  const height = rows.length * rowH + 8;
  const bars = rows
    .map((c, i) => {
      const y = i * rowH + 4;
      const counts = `${c.images} test${c.trainImages !== undefined ? ` · ${c.trainImages} train` : ''}`;
      return (
        `<g class="class-row" data-label="${esc(c.label)}"><title>${esc(c.label)}: ${pct(c.accuracy)} of ${c.images} test images${c.trainImages !== undefined ? `, trained on ${c.trainImages}` : ''}</title>` +
        `<text x="${labelW - 8}" y="${y + 13}" text-anchor="end">${esc(c.label)}</text>` +
        `<rect x="${labelW}" y="${y + 2}" width="${barW}" height="${rowH - 6}" fill="#eef0f5"/>` +
        `<rect class="bar" x="${labelW}" y="${y + 2}" width="${(barW * c.accuracy).toFixed(1)}" height="${rowH - 6}" fill="${accuracyColour(c.accuracy)}"/>` +
        `<text x="${labelW + barW + 8}" y="${y + 13}">${pct(c.accuracy)} <tspan class="muted">(${counts})</tspan></text></g>`
      );
    })
    .join('');
  return `<svg id="per-class-chart" class="chart" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="accuracy per class">${bars}</svg>`;
}

/** A line chart of per-epoch series (train solid, validation dashed), with the best epoch marked. */
function curveChart(
  id: string,
  title: string,
  series: { name: string; values: number[]; dashed?: boolean; colour: string }[],
  bestEpoch: number,
  asPercent: boolean,
): string {
  const W = 460;
  const H = 240;
  const m = { l: 52, r: 14, t: 30, b: 34 };
  const n = Math.max(...series.map((s) => s.values.length));
  const all = series.flatMap((s) => s.values).filter(Number.isFinite);
  if (n === 0 || all.length === 0) return `<p class="muted" id="${id}">no ${title.toLowerCase()} recorded</p>`;
  let lo = Math.min(...all);
  let hi = Math.max(...all);
  if (asPercent) [lo, hi] = [Math.max(0, Math.floor(lo * 10) / 10), Math.min(1, Math.ceil(hi * 10) / 10)];
  if (hi - lo < 1e-9) [lo, hi] = [lo - 0.5, hi + 0.5];
  const x = (i: number) => m.l + (n === 1 ? 0 : (i / (n - 1)) * (W - m.l - m.r));
  const y = (v: number) => m.t + (1 - (v - lo) / (hi - lo)) * (H - m.t - m.b);
  const ticks = Array.from({ length: 5 }, (_, k) => lo + (k / 4) * (hi - lo));
  const grid = ticks
    .map(
      (t) =>
        `<line x1="${m.l}" x2="${W - m.r}" y1="${y(t).toFixed(1)}" y2="${y(t).toFixed(1)}" class="grid"/><text x="${m.l - 6}" y="${(y(t) + 4).toFixed(1)}" text-anchor="end">${asPercent ? pct(t, 0) : t.toFixed(2)}</text>`,
    )
    .join('');
  const xTicks = [...new Set([1, Math.ceil(n / 2), n])]
    .map((e) => `<text x="${x(e - 1).toFixed(1)}" y="${H - m.b + 16}" text-anchor="middle">${e}</text>`)
    .join('');
  const lines = series
    .filter((s) => s.values.some(Number.isFinite))
    .map((s) => {
      const d = s.values.map((v, i) => `${i === 0 ? 'M' : 'L'}${x(i).toFixed(1)},${y(v).toFixed(1)}`).join('');
      return `<path class="series" data-series="${esc(s.name)}" d="${d}" fill="none" stroke="${s.colour}" stroke-width="2"${s.dashed ? ' stroke-dasharray="5 4"' : ''}/>`;
    })
    .join('');
  const best =
    bestEpoch >= 1 && bestEpoch <= n
      ? `<line x1="${x(bestEpoch - 1).toFixed(1)}" x2="${x(bestEpoch - 1).toFixed(1)}" y1="${m.t}" y2="${H - m.b}" class="best"><title>best epoch ${bestEpoch}</title></line>`
      : '';
  const legend = series
    .map(
      (s, i) =>
        `<g transform="translate(${m.l + 8 + i * 110},12)"><line x1="0" x2="18" y1="0" y2="0" stroke="${s.colour}" stroke-width="2"${s.dashed ? ' stroke-dasharray="5 4"' : ''}/><text x="24" y="4">${esc(s.name)}</text></g>`,
    )
    .join('');
  return (
    `<figure><figcaption>${esc(title)}</figcaption><svg id="${id}" class="chart curve" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(title)} per epoch">` +
    `${grid}${xTicks}<text x="${(m.l + W - m.r) / 2}" y="${H - 4}" text-anchor="middle" class="muted">epoch</text>${best}${lines}${legend}</svg></figure>`
  );
}

function curves(r: EvaluationReport, bestEpoch: number): string {
  const h = r.history ?? [];
  if (h.length === 0) return '<p class="muted">This report has no training history (it was written by an older graft).</p>';
  return (
    curveChart(
      'loss-curve',
      'Loss',
      [
        { name: 'train', values: h.map((e) => e.loss), colour: '#2f6fde' },
        { name: 'validation', values: h.map((e) => e.valLoss), dashed: true, colour: '#e0792b' },
      ],
      bestEpoch,
      false,
    ) +
    curveChart(
      'accuracy-curve',
      'Accuracy',
      [
        { name: 'train', values: h.map((e) => e.accuracy), colour: '#2f6fde' },
        { name: 'validation', values: h.map((e) => e.valAccuracy), dashed: true, colour: '#e0792b' },
      ],
      bestEpoch,
      true,
    )
  );
}

function pairsSection(r: EvaluationReport, thumbs: ReadonlyMap<string, string>): string {
  // Every confused pair is in the page (a click on its matrix cell shows it); the first REPORT_PAIRS are visible.
  const pairs = confusedPairs(r, Infinity);
  if (pairs.length === 0) return '<p class="muted">No test image was misclassified.</p>';
  return pairs
    .map((p, i) => {
      const photos = p.images
        .map((m) => {
          const src = thumbs.get(m.sha256);
          const caption = `${m.path} · ${pct(m.probability, 0)} ${m.predicted}`;
          return src
            ? `<figure class="thumb"><img src="${src}" alt="${esc(m.path)}" title="${esc(caption)}"><figcaption>${pct(m.probability, 0)}</figcaption></figure>`
            : `<figure class="thumb missing" title="${esc(caption)}"><span>${esc(m.path.split('/').pop())}</span></figure>`;
        })
        .join('');
      const more = p.count > p.images.length ? `<span class="muted">+${p.count - p.images.length} more</span>` : '';
      return `<div class="pair${i >= REPORT_PAIRS ? ' hidden' : ''}" data-actual="${esc(p.actual)}" data-predicted="${esc(p.predicted)}"><h3><span class="actual">${esc(p.actual)}</span> taken for <span class="predicted">${esc(p.predicted)}</span> <span class="muted">${p.count} image${p.count === 1 ? '' : 's'}, ${pct(p.fraction)} of ${esc(p.actual)}</span></h3><div class="thumbs">${photos}${more}</div></div>`;
    })
    .join('');
}

function sweepSection(r: EvaluationReport): string {
  if (!r.sweep) return '';
  const rows = [...r.sweep.heads].sort((a, b) => b.valAccuracy - a.valAccuracy || a.valLoss - b.valLoss);
  const body = rows
    .map(
      (h) =>
        `<tr class="${h.id === r.sweep!.winner ? 'winner' : ''}"><td>${pct(h.valAccuracy)}</td><td>${h.valLoss.toFixed(3)}</td><td>${esc(h.optimizer)}</td><td>${h.learningRate}</td><td>${h.weightDecay}</td><td>${h.labelSmoothing}</td><td>${h.batchSize}</td><td>${h.hiddenUnits ? `${h.hiddenUnits}, dropout ${h.dropout}` : '-'}</td><td>${h.epochs} (best ${h.bestEpoch})</td><td>${h.seconds.toFixed(1)} s${h.restored ? ' (restored)' : ''}</td></tr>`,
    )
    .join('');
  return (
    `<section id="sweep"><h2>Sweep <span class="muted">(${r.sweep.heads.length} heads on the cached vectors in ${r.sweep.seconds.toFixed(1)} s, ${r.sweep.parallel} at a time; the highlighted winner, best on validation, is this model)</span></h2>` +
    `<table class="sweep"><tr><th>val acc</th><th>val loss</th><th>optimizer</th><th>learning rate</th><th>L2</th><th>label smoothing</th><th>batch</th><th>hidden layer</th><th>epochs</th><th>time</th></tr>${body}</table></section>`
  );
}

/** How many photos graft predict --min-confidence P answers, and how accurately, at each P: chosen on validation, checked on test. */
function coverageSection(r: EvaluationReport): string {
  const c = r.coverage;
  if (!c?.test.length || !r.images) return '';
  const cell = (p?: { answered: number; accuracy: number }) =>
    p ? `<td>${pct(p.answered)}</td><td>${p.answered ? pct(p.accuracy) : '-'}</td>` : '<td>-</td><td>-</td>';
  const body = c.test.map((t, i) => `<tr><td>${t.threshold}</td>${cell(c.validation?.[i])}${cell(t)}</tr>`).join('');
  return (
    `<section id="coverage"><h2>Answered and right at each <code>--min-confidence</code> <span class="muted">(graft predict answers "unknown" below it: choose on validation, check on test)</span></h2>` +
    `<table class="sweep"><tr><th>--min-confidence</th><th>validation answered</th><th>accuracy on those</th><th>test answered</th><th>accuracy on those</th></tr>${body}</table></section>`
  );
}

function detailsTable(rows: [string, unknown][]): string {
  return `<table class="details">${rows
    .filter(([, v]) => v !== undefined && v !== '')
    .map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`)
    .join('')}</table>`;
}

/** The whole report as one HTML document. */
export function renderReport(input: ReportInput): string {
  const { report: r, card: m } = input;
  const thumbs = input.thumbnails ?? new Map<string, string>();
  const b = m.backbone;
  const t = m.training;
  const s = r.splits;
  const data = JSON.stringify({ classes: r.classes, confusion: r.confusion, accuracy: r.perClass.map((c) => c.accuracy) }).replace(/</g, '\\u003c');
  const title = `graft report${m.jobId ? `: ${m.jobId}` : ''}`;
  const card = (label: string, value: string, note = '') =>
    `<div class="card"><div class="label">${esc(label)}</div><div class="value">${esc(value)}</div>${note ? `<div class="muted">${esc(note)}</div>` : ''}</div>`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src ${SCRIPT_HASH}">
<title>${esc(title)}</title>
<link rel="icon" href="data:,">
<style>
  :root { --fg: #1d2330; --muted: #687086; --accent: #2f6fde; --bg: #f6f7fa; --card: #fff; --line: #dde1ea; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
  header { padding: 18px 28px; background: var(--card); border-bottom: 1px solid var(--line); }
  header h1 { margin: 0; font-size: 21px; }
  main { max-width: 1280px; margin: 0 auto; padding: 12px 20px 40px; }
  section { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 16px 20px; margin-top: 18px; overflow-x: auto; }
  h2 { font-size: 16px; margin: 0 0 10px; }
  h3 { font-size: 14px; margin: 0 0 6px; font-weight: 600; }
  .muted, .chart .muted { color: var(--muted); fill: var(--muted); font-weight: normal; }
  .cards { display: flex; gap: 12px; flex-wrap: wrap; }
  .card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; min-width: 130px; background: #fbfcfe; }
  .card .label { color: var(--muted); font-size: 12px; }
  .card .value { font-size: 22px; font-weight: 650; }
  .chart text { font-size: 12px; fill: var(--fg); }
  .chart .grid { stroke: #e6e9f0; }
  .chart .best { stroke: #9aa1b3; stroke-dasharray: 2 3; }
  .curves { display: flex; gap: 20px; flex-wrap: wrap; }
  figure { margin: 0; }
  figcaption { font-weight: 600; margin-bottom: 4px; }
  .pairs { display: grid; grid-template-columns: repeat(auto-fill, minmax(330px, 1fr)); gap: 12px; }
  .pair { border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; }
  .actual { color: #b03a2e; } .predicted { color: #1f5fbf; }
  .thumbs { display: flex; gap: 8px; flex-wrap: wrap; align-items: center; }
  .thumb { width: 96px; text-align: center; font-size: 11px; color: var(--muted); }
  .thumb img { width: 96px; height: 96px; object-fit: cover; border-radius: 6px; display: block; }
  .thumb.missing { height: 96px; border: 1px dashed var(--line); border-radius: 6px; display: flex; align-items: center; justify-content: center; overflow: hidden; padding: 4px; word-break: break-all; }
  table.sweep { border-collapse: collapse; font-variant-numeric: tabular-nums; }
  table.sweep th, table.sweep td { padding: 3px 10px; border-bottom: 1px solid var(--line); text-align: left; }
  table.sweep tr.winner td { background: #e8f6ee; font-weight: 600; }
  .details th { text-align: left; color: var(--muted); font-weight: normal; padding: 2px 16px 2px 0; vertical-align: top; }
  .details td { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12.5px; word-break: break-all; }
  .controls { margin-bottom: 8px; display: flex; gap: 14px; align-items: center; flex-wrap: wrap; }
  #matrix-tip { position: fixed; pointer-events: none; background: #1d2330; color: #fff; padding: 4px 8px; border-radius: 4px; font-size: 12px; display: none; z-index: 10; }
  #confusion-matrix text { font-size: inherit; fill: var(--fg); }
  #confusion-matrix rect.cell:hover { stroke: #000; stroke-width: 1; cursor: pointer; }
  .pair.hidden { display: none; } .pair.selected { outline: 2px solid var(--accent); }
  .finding { display: flex; flex-direction: column; align-items: center; font-size: 11px; text-align: center; width: 104px; }
</style>
</head>
<body>
<header><h1>${esc(title)}</h1><div class="muted">${r.classes.length} classes · backbone ${esc(b.id)} · written ${esc(m.createdAt)}</div></header>
<main>
<section id="summary"><h2>Summary</h2><div class="cards">
${card('test top-1', pct(r.top1), `${r.images} test images`)}
${card(`test top-${r.topK}`, pct(r.topKAccuracy))}
${card('train images', String(s?.train ?? r.perClass.reduce((a, c) => a + (c.trainImages ?? 0), 0)))}
${card('validation images', s ? String(s.validation) : 'n/a')}
${card('test images', String(s?.test ?? r.images))}
${card('classes', String(r.classes.length))}
</div></section>
<section id="per-class"><h2>Accuracy per class <span class="muted">(test set, worst first)</span></h2>${perClassChart(r)}</section>
<section id="confusion"><h2>Confusion matrix <span class="muted">(rows: actual class, columns: predicted; colour: share of the row)</span></h2>
<div class="controls"><label>Order <select id="matrix-order"><option value="name">class name</option><option value="accuracy">accuracy, worst first</option><option value="confusion">most confused first</option></select></label><span class="muted">hover a cell for its count, click it for its photos</span><span id="cell-note" class="muted"></span></div>
<div id="matrix-holder"></div><div id="matrix-tip"></div></section>
<section id="pairs"><h2>Most confused pairs <span class="muted">(misclassified test images)</span></h2><div class="pairs">${pairsSection(r, thumbs)}</div></section>
${coverageSection(r)}
<section id="training"><h2>Training</h2><div class="curves">${curves(r, t.bestEpoch)}</div></section>
${sweepSection(r)}
${auditSection(input.audit, thumbs)}
<section id="setup"><h2>Backbone and options</h2>${detailsTable([
    ['backbone', `${b.id} (${b.format} model, ${b.dim}-d bottleneck)`],
    ['source', b.url],
    ['bottleneck', b.bottleneck || '(the model output)'],
    ['input', `${b.inputSize}x${b.inputSize} RGB, preprocessing ${b.preprocess}`],
    ['fingerprint', b.fingerprint],
    ['optimizer', `${t.optimizer}, learning rate ${t.learningRate}, batch ${t.batchSize}`],
    [
      'regularisation',
      `L2 ${t.weightDecay ?? 0}, label smoothing ${t.labelSmoothing ?? 0}${t.hiddenUnits ? `, hidden layer ${t.hiddenUnits} units, dropout ${t.dropout}` : ''}${t.classWeights === 'balanced' ? ', balanced class weights' : ''}`,
    ],
    ['epochs', `${t.epochs} run, best ${t.bestEpoch}${t.stoppedEarly ? ' (stopped early)' : ''}`],
    ['job', m.jobId],
  ])}</section>
</main>
<script type="application/json" id="graft-data">${data}</script>
<script>${SCRIPT}</script>
</body>
</html>
`;
}
