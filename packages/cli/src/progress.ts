/** Progress for long work: a bar redrawn in place on a terminal, plain lines otherwise. */
export interface Progress {
  update(done: number, total: number, detail?: string): void;
  done(message?: string): void;
}

export function createProgress(label: string, stream: NodeJS.WriteStream = process.stderr): Progress {
  const tty = Boolean(stream.isTTY);
  let lastLine = 0;
  let lastPct = -1;
  return {
    update(done, total, detail = '') {
      const frac = total > 0 ? Math.min(1, done / total) : 0;
      const pct = Math.floor(frac * 100);
      if (tty) {
        const width = 30;
        const fill = Math.round(frac * width);
        stream.write(`\r${label} [${'#'.repeat(fill)}${'-'.repeat(width - fill)}] ${done}/${total} ${detail}`.padEnd(lastLine));
        lastLine = label.length + width + 20 + detail.length;
        return;
      }
      // Plain mode: a line per 10%, and always the last one.
      if (pct >= lastPct + 10 || (done >= total && pct !== lastPct)) {
        lastPct = pct - (pct % 10);
        stream.write(`${label}: ${done}/${total}${detail ? ` ${detail}` : ''}\n`);
      }
    },
    done(message) {
      if (tty) stream.write('\n');
      if (message) stream.write(`${message}\n`);
    },
  };
}
