import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findNatsServer, startLocalNats, type LocalNats } from '@graft/cli';

/** A nats-server for one test file: random port, temp store dir, removed afterwards. */
export interface TestNats extends LocalNats {
  dataDir: string;
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
  const nats = await startLocalNats({ dataDir, extraConfig });
  return {
    ...nats,
    dataDir,
    async cleanup() {
      await nats.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
