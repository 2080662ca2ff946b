import { createReadStream, existsSync } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, resolve, sep } from 'node:path';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.json': 'application/json',
  '.bin': 'application/octet-stream',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.css': 'text/css; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
};

export interface ServedFolder {
  server: Server;
  /** http://host:port/ of the try-it page (or of the folder, when it has no web/). */
  url: string;
  close(): Promise<void>;
}

/**
 * Serves a model folder read-only: GET and HEAD of its files, nothing outside it, no listings.
 * "/" leads to web/index.html when the folder has a bundle.
 */
export async function serveModelFolder(dir: string, opts: { port?: number; host?: string } = {}): Promise<ServedFolder> {
  // The real folder: a link inside it that points out is followed, then refused.
  const root = await realpath(resolve(dir));
  const host = opts.host ?? '127.0.0.1';
  let hosts = new Set<string>();
  const home = existsSync(join(root, 'web', 'index.html')) ? '/web/index.html' : existsSync(join(root, 'report.html')) ? '/report.html' : '/';
  const server = createServer(async (req, res) => {
    res.setHeader('X-Content-Type-Options', 'nosniff');
    // Only the names this server answers to: a page of another site that resolves its own name to
    // 127.0.0.1 (DNS rebinding) is refused.
    if (!hosts.has((req.headers.host ?? '').toLowerCase())) {
      res.writeHead(421).end('wrong host');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD' }).end();
      return;
    }
    let path: string;
    try {
      path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    } catch {
      // A path that does not decode is the client's mistake: answered 400.
      res.writeHead(400).end('bad path');
      return;
    }
    if (path === '/' && home !== '/') {
      res.writeHead(302, { Location: home }).end();
      return;
    }
    const named = resolve(root, `.${path}`);
    const file = await realpath(named).catch(() => named); // missing: answered 404 below
    if (file !== root && !file.startsWith(root + sep)) {
      res.writeHead(403).end('outside the model folder');
      return;
    }
    const s = await stat(file).catch(() => undefined); // missing: answered 404 below
    if (!s?.isFile()) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream', 'Content-Length': s.size, 'Cache-Control': 'no-cache' });
    if (req.method === 'HEAD') res.end();
    else createReadStream(file).pipe(res);
  });
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(opts.port ?? 8080, host, ok);
  });
  const { port } = server.address() as AddressInfo;
  const shown = host.includes(':') ? `[${host}]` : host;
  hosts = new Set([`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, `${shown}:${port}`.toLowerCase()]);
  return {
    server,
    url: `http://${shown}:${port}${home}`,
    close: () => new Promise<void>((ok) => server.close(() => ok())),
  };
}
