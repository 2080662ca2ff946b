import { open, readFile, rm, stat, writeFile, type FileHandle } from 'node:fs/promises';
import { extname } from 'node:path';
import type { Prediction } from '@graft/protocol';
import { UsageError } from './args.js';

/*
 * graft predict's answers file: one row per photo in the order the job lists them, CSV or JSONL (by
 * --out's extension), written as the answers arrive. While a run is unfinished a marker file beside
 * it (`<out>.partial`) names what it holds (the model, the source, the options), so a run killed and
 * started again with the same arguments appends to it: the rows written stay, a half-written last
 * row is cut, nothing is written twice.
 */

export type PredictionFormat = 'csv' | 'jsonl';

export const CSV_HEADER = 'path,prediction,probability,top,model,error';

/** What a rerun must match to go on with a file (the marker's content). */
export interface PredictionRun {
  model: string;
  source: string;
  top: number;
  minConfidence: number;
}

export interface AnswerCounts {
  rows: number;
  answered: number;
  unknown: number;
  failed: number;
}

/** The format --out's extension names. @throws UsageError for another. */
export function predictionFormat(out: string): PredictionFormat {
  const ext = extname(out).toLowerCase();
  if (ext === '.csv') return 'csv';
  if (ext === '.jsonl' || ext === '.ndjson') return 'jsonl';
  throw new UsageError(`--out ${out}: name a .csv or .jsonl file`);
}

export class PredictionFile {
  readonly counts: AnswerCounts = { rows: 0, answered: 0, unknown: 0, failed: 0 };

  private constructor(
    private readonly fh: FileHandle,
    readonly path: string,
    private readonly format: PredictionFormat,
    private readonly classes: readonly string[],
    private readonly run: PredictionRun,
    /** Rows already in the file when it was opened (a resumed run skips that many answers). */
    readonly resumedRows: number,
  ) {
    this.counts.rows = resumedRows;
  }

  /**
   * Opens --out: a new file, or the unfinished one of the same run (its complete rows kept).
   * @throws UsageError when --out exists and is finished, or belongs to another run.
   */
  static async open(path: string, classes: readonly string[], run: PredictionRun): Promise<PredictionFile> {
    const format = predictionFormat(path);
    const marker = `${path}.partial`;
    const existing = await stat(path).catch(() => undefined);
    const mark = await readFile(marker, 'utf8').catch(() => undefined);
    let rows = 0;
    if (existing) {
      if (!existing.isFile()) throw new UsageError(`--out ${path} is not a file: name a .csv or .jsonl file`);
      if (mark === undefined) throw new UsageError(`--out ${path} exists (a finished run's answers): remove it, or name another file`);
      if (mark !== JSON.stringify(run))
        throw new UsageError(`--out ${path} is an unfinished run of another model, source or options (${marker}): remove both, or name another file`);
      rows = await keepCompleteRows(path, format);
    } else await writeFile(marker, JSON.stringify(run));
    const fh = await open(path, 'a');
    if (!existing || (format === 'csv' && rows < 0)) await fh.write(format === 'csv' ? `${CSV_HEADER}\n` : '');
    return new PredictionFile(fh, path, format, classes, run, Math.max(0, rows));
  }

  /** Appends answers (one row each). */
  async write(rows: readonly Prediction[]): Promise<void> {
    let text = '';
    for (const r of rows) text += this.row(r);
    await this.fh.write(text);
  }

  /** The file is whole: flushed, and its marker removed (a rerun then refuses to overwrite it). */
  async finish(): Promise<void> {
    await this.fh.sync();
    await this.fh.close();
    await rm(`${this.path}.partial`, { force: true });
  }

  async close(): Promise<void> {
    await this.fh.close().catch(() => undefined);
  }

  private row(r: Prediction): string {
    this.counts.rows++;
    const top = r.classes.map((c, k) => ({ label: this.classes[c] ?? String(c), probability: round(r.probabilities[k]) }));
    let prediction = '';
    if (r.error) this.counts.failed++;
    else if (top[0].probability < this.run.minConfidence) {
      prediction = 'unknown';
      this.counts.unknown++;
    } else {
      prediction = top[0].label;
      this.counts.answered++;
    }
    const probability = r.error ? null : top[0].probability;
    if (this.format === 'jsonl')
      return `${JSON.stringify({ path: r.path, prediction, probability, top, model: this.run.model, ...(r.error ? { error: r.error } : {}) })}\n`;
    const cells = [r.path, prediction, probability ?? '', top.map((t) => `${t.label}:${t.probability}`).join(';'), this.run.model, r.error];
    return `${cells.map((c) => csvCell(String(c))).join(',')}\n`;
  }
}

function round(p: number): number {
  return Math.round(p * 1e6) / 1e6;
}

/** A CSV cell, quoted when it holds a comma, quote or line break (RFC 4180). */
export function csvCell(s: string): string {
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/**
 * Cuts an unfinished file after its last complete row (a kill mid-write leaves half a row).
 * @returns the complete rows, header not counted (-1: a CSV without even its header).
 */
async function keepCompleteRows(path: string, format: PredictionFormat): Promise<number> {
  const bytes = await readFile(path);
  const end = bytes.lastIndexOf(0x0a) + 1;
  if (end < bytes.byteLength) {
    const fh = await open(path, 'r+');
    try {
      await fh.truncate(end);
    } finally {
      await fh.close();
    }
  }
  // Rows, not lines: a CSV cell may hold a quoted line break (a path with one). JSON escapes its own.
  let rows = 0;
  let quoted = false;
  for (let i = 0; i < end; i++) {
    if (format === 'csv' && bytes[i] === 0x22) quoted = !quoted;
    else if (bytes[i] === 0x0a && !quoted) rows++;
  }
  return format === 'jsonl' ? rows : rows - 1;
}
