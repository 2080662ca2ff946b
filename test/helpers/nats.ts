import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findNatsServer, startLocalNats, type LocalNats } from '@graft/protocol';

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
