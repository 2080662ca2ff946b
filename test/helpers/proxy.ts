import { createConnection, createServer, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy to a local port that can freeze: once armed, it stops passing bytes towards the
 * client after `bytes` more have passed (a broker that stops answering mid-stream, without closing
 * the connection), and thaws on demand.
 */
export interface FreezingProxy {
  port: number;
  /** From now on, freeze after this many more bytes towards the client. */
  arm(bytes: number): void;
  /** Whether it froze. */
  readonly frozen: boolean;
  /** Passes what it held back, and everything after. */
  thaw(): void;
  close(): Promise<void>;
}

export async function freezingProxy(targetPort: number): Promise<FreezingProxy> {
  const sockets = new Set<Socket>();
  const held: { to: Socket; chunk: Buffer }[] = [];
  let budget = Infinity;
  let frozen = false;
  const server: Server = createServer((client) => {
    const upstream = createConnection({ host: '127.0.0.1', port: targetPort });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    }
    client.on('data', (d) => upstream.write(d));
    upstream.on('data', (d) => {
      if (frozen) return void held.push({ to: client, chunk: d });
      if (d.length <= budget) {
        budget -= d.length;
        client.write(d);
        return;
      }
      // Pass the bytes the budget allows; hold the rest.
      client.write(d.subarray(0, budget));
      held.push({ to: client, chunk: d.subarray(budget) });
      frozen = true;
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    arm(bytes) {
      budget = bytes;
    },
    get frozen() {
      return frozen;
    },
    thaw() {
      frozen = false;
      budget = Infinity;
      for (const { to, chunk } of held.splice(0)) to.write(chunk);
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}
