import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findNatsServer, freePort, startLocalNats, type LocalNats } from '@graft/protocol/testing';

/** A nats-server for one test file: random port, temp store dir, removed afterwards. */
export interface TestNats extends LocalNats {
  dataDir: string;
  /** kill -9 the server, then start it again on the same port and store dir. */
  crashAndRestart(downMs?: number): Promise<void>;
  /** Stops the server and deletes its data. */
  cleanup(): Promise<void>;
}

/**
 * Starts a real nats-server with JetStream on loopback. Fails with a clear message
 * when nats-server is not installed (CI installs it: apt-get install nats-server).
 */
export async function startTestNats(extraConfig?: string): Promise<TestNats> {
  findNatsServer(); // throws a readable "install nats-server" error
  const dataDir = await mkdtemp(join(tmpdir(), 'graft-test-nats-'));
  let nats = await startLocalNats({ dataDir, extraConfig });
  const t: TestNats = {
    ...nats,
    dataDir,
    async crashAndRestart(downMs = 1000) {
      const exited = new Promise((r) => nats.process.once('exit', r));
      nats.process.kill('SIGKILL');
      await exited;
      await new Promise((r) => setTimeout(r, downMs));
      nats = await startLocalNats({ dataDir, extraConfig, port: nats.port, monitorPort: nats.monitorPort });
      t.process = nats.process;
    },
    async cleanup() {
      await nats.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
  return t;
}

/** Three nats-servers clustered on loopback, JetStream on each: kill and restart any one. */
export interface TestNatsCluster {
  /** Every server's client URL, comma separated (what clients are given). */
  urls: string;
  nodes: LocalNats[];
  /** kill -9 one server. */
  crash(i: number): Promise<void>;
  /** Starts a crashed server again on its ports and store. */
  restart(i: number): Promise<void>;
  cleanup(): Promise<void>;
}

export async function startTestNatsCluster(size = 3): Promise<TestNatsCluster> {
  findNatsServer();
  const base = await mkdtemp(join(tmpdir(), 'graft-test-cluster-'));
  const ports = await Promise.all(Array.from({ length: size }, async () => ({ client: await freePort(), route: await freePort(), monitor: await freePort() })));
  const config = (i: number) =>
    [
      `server_name: n${i}`,
      `cluster { name: graft-test, listen: 127.0.0.1:${ports[i].route}, routes: [${ports
        .filter((_, j) => j !== i)
        .map((p) => `nats-route://127.0.0.1:${p.route}`)
        .join(', ')}] }`,
    ].join('\n');
  const start = (i: number) => startLocalNats({ dataDir: join(base, `n${i}`), port: ports[i].client, monitorPort: ports[i].monitor, extraConfig: config(i) });
  const nodes = await Promise.all(ports.map((_, i) => start(i)));
  return {
    urls: nodes.map((n) => n.url).join(','),
    nodes,
    async crash(i) {
      const exited = new Promise((r) => nodes[i].process.once('exit', r));
      nodes[i].process.kill('SIGKILL');
      await exited;
    },
    async restart(i) {
      nodes[i] = await start(i);
    },
    async cleanup() {
      await Promise.all(nodes.map((n) => n.stop()));
      await rm(base, { recursive: true, force: true });
    },
  };
}
