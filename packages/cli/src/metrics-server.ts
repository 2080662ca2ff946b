import { createServer, type Server } from 'node:http';
import { collectDefaultMetrics, type Registry } from 'prom-client';

/** Where metrics listen unless told: this machine only (they have no authentication). */
export const DEFAULT_METRICS_ADDRESS = '127.0.0.1';

/** What /readyz and /healthz answer: ready to work; alive (default: always, while it answers at all). */
export type Probes = { ready: () => boolean; healthy?: () => boolean };

/**
 * /metrics (Prometheus text), /healthz (alive) and /readyz (ready to work) on one port.
 * @param host the address to listen on (--metrics-address; compose passes 0.0.0.0 inside its network).
 * @param text what /metrics answers, when not the registry's own metrics (a supervisor's, with its children's).
 */
export async function serveMetrics(
  registry: Registry,
  port: number,
  { ready, healthy = () => true }: Probes,
  host = DEFAULT_METRICS_ADDRESS,
  text?: () => Promise<string>,
): Promise<Server> {
  if (!text) collectDefaultMetrics({ register: registry });
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/metrics') {
      (text ? text() : registry.metrics()).then(
        (text) => {
          res.writeHead(200, { 'content-type': registry.contentType });
          res.end(text);
        },
        (err: Error) => {
          res.writeHead(500);
          res.end(err.message);
        },
      );
    } else if (path === '/healthz') {
      const ok = healthy();
      res.writeHead(ok ? 200 : 503).end(ok ? 'ok\n' : 'unhealthy\n');
    } else if (path === '/readyz') {
      const ok = ready();
      res.writeHead(ok ? 200 : 503).end(ok ? 'ready\n' : 'not ready\n');
    } else res.writeHead(404).end('not found\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}
