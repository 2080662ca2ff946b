import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { AUDIT_FILE, readModelFolder, type EvaluationReport, type ModelCard } from '@graft/head';
import { serveModelFolder, thumbnailsWanted } from '@graft/web';
import { NATS_HELP, NATS_OPTIONS, UsageError, busOptions, int, parse, str } from '../args.js';
import type { Command } from './command.js';
import { parseAudit, readJobModel, reportThumbnails, writeReport } from '../export.js';
import { withBus } from '../service.js';
import { untilSignal } from '../signals.js';

/* Commands that show a result to a person: graft report, graft serve. */

/** Opens a file or URL with the desktop's default program; says so when there is none. */
function openInBrowser(target: string): void {
  const cmd = process.platform === 'darwin' ? 'open' : process.platform === 'win32' ? 'explorer' : 'xdg-open';
  const child = spawn(cmd, [target], { stdio: 'ignore', detached: true });
  child.on('error', () => process.stderr.write(`cannot open a browser here (${cmd} failed): open ${target} yourself\n`));
  child.unref();
}

const json = <T>(bytes: Uint8Array): T => JSON.parse(Buffer.from(bytes).toString('utf8')) as T;

export const report: Command = {
  summary: 'write (and open) report.html: accuracy per class, confusion matrix, confused photos, training curves',
  usage: `graft report JOB|MODEL_DIR [--out FILE] [--open] [--nats URL]

JOB: renders the finished job's report from the cluster (thumbnails from its image store) to
--out (default ./JOB-report.html). MODEL_DIR: the folder's report.html (graft train and graft
export write it); rendered again from its report.json when it is missing or with --refresh,
with thumbnails from the image store when --nats is given.

  --out FILE          where to write it
  --open              open it in the default browser
  --refresh           render a model folder's report again
${NATS_HELP}`,
  options: { ...NATS_OPTIONS, out: { type: 'string' }, open: { type: 'boolean' }, refresh: { type: 'boolean' } },
  async run(argv) {
    const { values: v, positionals } = parse(argv, this.options);
    if (positionals.length !== 1) throw new UsageError('report takes one JOB or MODEL_DIR');
    const target = positionals[0];
    let path: string;
    if (existsSync(join(target, 'graft.json'))) {
      path = resolve(str(v, 'out') ?? join(target, 'report.html'));
      if (v.refresh || str(v, 'out') || !existsSync(path)) {
        const folder = await readModelFolder(target);
        const audit = parseAudit(existsSync(join(target, AUDIT_FILE)) ? await readFile(join(target, AUDIT_FILE)) : undefined, target);
        const thumbs = str(v, 'nats')
          ? await withBus(busOptions(v, 'graft-cli'), (bus) => reportThumbnails(bus, thumbnailsWanted(folder.report, audit)))
          : new Map<string, string>();
        // The photos live in a cluster's image store: without one, say what the new report lacks.
        const had = existsSync(path) ? ((await readFile(path, 'utf8')).match(/src="data:image\//g) ?? []).length : 0;
        await writeReport(path, folder.report, folder.card, thumbs, audit);
        if (had > thumbs.size)
          process.stderr.write(
            `${path}: rendered with ${thumbs.size} of the ${had} thumbnails it had (the photos are in a cluster's image store: --nats URL of that cluster keeps them)\n`,
          );
      }
    } else {
      if (existsSync(target)) throw new UsageError(`${target} is not a model folder (no graft.json)`);
      path = resolve(str(v, 'out') ?? `${target}-report.html`);
      await withBus(busOptions(v, 'graft-cli'), async (bus) => {
        const files = await readJobModel(bus, target);
        const r = json<EvaluationReport>(files['report.json']);
        const audit = parseAudit(files[AUDIT_FILE], `job ${target}`);
        await writeReport(path, r, json<ModelCard>(files['graft.json']), await reportThumbnails(bus, thumbnailsWanted(r, audit)), audit);
      });
    }
    process.stdout.write(`${path}\n`);
    if (v.open) openInBrowser(path);
    return 0;
  },
};

export const serve: Command = {
  summary: "serve a model folder's try-it page and report on localhost",
  usage: `graft serve MODEL_DIR [--port P] [--host H] [--open]

Serves the folder read-only (web/index.html, the try-it page, and report.html) until Ctrl-C.
The try-it page computes everything in the browser; graft serve only hands out the files.

  --port P            port (default 8080; 0 picks a free one)
  --host H            address to listen on (default 127.0.0.1: this machine only)
  --open              open the page in the default browser`,
  options: { port: { type: 'string' }, host: { type: 'string' }, open: { type: 'boolean' } },
  async run(argv) {
    const { values: v, positionals } = parse(argv, this.options);
    if (positionals.length !== 1) throw new UsageError('serve takes one MODEL_DIR');
    const dir = positionals[0];
    if (!existsSync(join(dir, 'graft.json'))) throw new UsageError(`${dir} is not a model folder (no graft.json)`);
    if (!existsSync(join(dir, 'web', 'index.html'))) process.stderr.write(`${dir} has no web/ bundle: make one with graft export JOB ${dir} --bundle\n`);
    const served = await serveModelFolder(dir, { port: int(v, 'port', 0) ?? 8080, host: str(v, 'host') });
    process.stdout.write(`${served.url}\n`);
    process.stderr.write('serving until Ctrl-C\n');
    if (v.open) openInBrowser(served.url);
    await untilSignal();
    await served.close();
    return 0;
  },
};
