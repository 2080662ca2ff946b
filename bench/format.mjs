// How BENCHMARKS.md writes numbers: shared by every section's renderer.
export const f = (x, d = 2) => (x === undefined || Number.isNaN(x) ? 'n/a' : Number(x).toFixed(d));
export const pct = (x) => (x === undefined ? 'n/a' : `${f(100 * x, 1)} %`);
export const mark = (ok) => (ok ? 'met' : '**missed**');
