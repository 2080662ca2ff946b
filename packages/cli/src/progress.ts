/** Progress for long work: a bar redrawn in place on a terminal, plain lines otherwise. */
export interface Progress {
  update(done: number, total: number, detail?: string): void;
  done(message?: string): void;
}

export function createProgress(label: string, stream: NodeJS.WriteStream = process.stderr): Progress {
  const tty = Boolean(stream.isTTY);
  let lastLine = 0;
  let lastPct = -1;
  let pending: string | undefined; // plain mode: the latest line not yet written
  let written = '';
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
      // Plain mode: the first line, then one per 10%, and the last one (at done()).
      const line = `${label}: ${done}/${total}${detail ? ` ${detail}` : ''}\n`;
      if (line === written) return;
      if (lastPct < 0 || pct >= lastPct + 10) {
        lastPct = pct - (pct % 10);
        stream.write((written = line));
        pending = undefined;
      } else pending = line;
    },
    done(message) {
      if (tty) stream.write('\n');
      else if (pending && pending !== written) stream.write(pending);
      pending = undefined;
      if (message) stream.write(`${message}\n`);
    },
  };
}
