import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { Objm, setSha256Backend } from '@nats-io/obj';
import { DEFAULT_NATS_URL } from './names.js';
import { BusError } from './errors.js';
import { setUpTopology, type Buckets } from './topology.js';
import type { TopologyOptions } from './stream-configs.js';

// Object store digests: Node's native SHA-256, not the pure-JS default (it ran on every
// image fetch, on the thread the backbone needs).
setSha256Backend('native');

/*
 * The connection to NATS, and the Bus other packages hold: connected once, the topology set up
 * (topology.ts) and its handles kept to protocol's stores. Reading and writing each store is the job
 * of its module in stores/.
 */

/** How to reach NATS. Secrets here are never logged: use {@link describeBus} for logs. */
export interface BusOptions {
  /** Server URL(s), comma separated. Default {@link DEFAULT_NATS_URL}. */
  servers?: string | string[];
  /** Connection name shown in the server's monitoring. */
  name?: string;
  user?: string;
  pass?: string;
  token?: string;
  /** Wait between reconnect attempts, ms. Default 1000. */
  reconnectWaitMs?: number;
  /** TLS: CA file and optional client certificate/key files. */
  tls?: { caFile?: string; certFile?: string; keyFile?: string };
  /**
   * Prefix of this client's reply subjects. Default `_INBOX_<user>` when a user is set (the
   * deployed permissions let each role subscribe only to its own), else `_INBOX`.
   */
  inboxPrefix?: string;
}

/**
 * A connected bus, as graft's packages hold it: whether it is connected, and closing it. What it
 * holds (the connection, JetStream, the buckets) is protocol's own: its stores reach it through
 * {@link handles}, which protocol does not export, so no other package can touch a stream or bucket.
 */
export interface Bus {
  /** Whether the connection is still open (it reconnects by itself until closed). */
  isConnected(): boolean;
  close(): Promise<void>;
}

/** A bus with its handles: every stream and bucket opened. Protocol's stores only (and tests, by `@graft/protocol/testing`). */
export interface BusHandles extends Bus, Buckets {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
}

/** The handles of a bus protocol opened (every Bus is one: openBus makes them). */
export function handles(bus: Bus): BusHandles {
  return bus as BusHandles;
}

/**
 * Server URLs without credentials, and the credentials a URL carried (`nats://user:pw@host`):
 * they log in as user and password and are never shown.
 */
export function serverCredentials(servers: string | string[] | undefined): { servers: string[]; user?: string; pass?: string } {
  const list = (typeof servers === 'string' ? servers.split(',').map((s) => s.trim()) : servers) ?? [DEFAULT_NATS_URL];
  let user: string | undefined;
  let pass: string | undefined;
  const clean = list.map((s) => {
    const m = /^([a-z]+:\/\/)([^@/]*)@(.*)$/i.exec(s);
    if (!m) return s;
    const [u, p] = m[2].split(':');
    user ??= decodeURIComponent(u ?? '');
    if (p !== undefined) pass ??= decodeURIComponent(p);
    return `${m[1]}${m[3]}`;
  });
  return { servers: clean, ...(user ? { user } : {}), ...(pass !== undefined ? { pass } : {}) };
}

/** Redacts credentials: what a log line may say about a bus config. */
export function describeBus(opts: BusOptions): Record<string, unknown> {
  const { servers, user } = serverCredentials(opts.servers);
  return {
    servers: servers.join(','),
    name: opts.name,
    auth: opts.token ? 'token' : (opts.user ?? user) ? `user ${opts.user ?? user}` : 'none',
    tls: opts.tls ? true : false,
  };
}

/** Connects and keeps reconnecting forever: a broker restart must not end a worker. */
async function connectNats(opts: BusOptions = {}): Promise<NatsConnection> {
  const fromUrl = serverCredentials(opts.servers);
  const servers = fromUrl.servers;
  const user = opts.user ?? fromUrl.user;
  try {
    return await connect({
      servers,
      name: opts.name,
      user,
      pass: opts.pass ?? fromUrl.pass,
      token: opts.token,
      maxReconnectAttempts: -1,
      reconnectTimeWait: opts.reconnectWaitMs ?? 1000,
      waitOnFirstConnect: false,
      tls: opts.tls ? { caFile: opts.tls.caFile, certFile: opts.tls.certFile, keyFile: opts.tls.keyFile } : undefined,
      inboxPrefix: opts.inboxPrefix ?? (user ? `_INBOX_${user}` : undefined),
    });
  } catch (err) {
    // The client's own message may quote the URL it was given: only the clean list is shown, and the
    // client's error is not kept as the cause (a logger would print it, credentials and all).
    const why = (err as Error).message.replace(/[a-z]+:\/\/[^@\s/]*@/gi, '');
    throw new BusError(`cannot connect to NATS at ${servers.join(',')}: ${why}`);
  }
}

/**
 * Connects (see {@link connectNats}) and creates, idempotently, every stream, consumer and
 * bucket graft uses, then opens them.
 * @throws BusError when NATS cannot be reached or JetStream is not enabled.
 */
export async function openBus(opts: BusOptions = {}, topology: TopologyOptions = {}): Promise<Bus> {
  const nc = await connectNats(opts);
  try {
    return await openBusOn(nc, topology);
  } catch (err) {
    await nc.close().catch(() => undefined); // the setup error below is what matters
    throw err instanceof BusError ? err : new BusError(`cannot set up JetStream: ${(err as Error).message}`, { cause: err });
  }
}

/** {@link openBus} on a connection (closing the Bus closes it). */
async function openBusOn(nc: NatsConnection, topology: TopologyOptions = {}): Promise<BusHandles> {
  const jsm = await jetstreamManager(nc, { timeout: 10_000, checkAPI: topology.create ?? true });
  const js = jetstream(nc, { timeout: 10_000 });
  return makeBus(nc, js, jsm, await setUpTopology(jsm, new Kvm(js), new Objm(js), topology));
}

/** How long closing a bus waits for pending messages to flush, ms. */
const CLOSE_DRAIN_MS = 5000;

function makeBus(nc: NatsConnection, js: JetStreamClient, jsm: JetStreamManager, buckets: Buckets): BusHandles {
  return {
    nc,
    js,
    jsm,
    ...buckets,
    isConnected: () => !nc.isClosed(),
    async close() {
      if (nc.isClosed()) return;
      // Drain flushes what is pending; with the broker gone it would wait forever, so it gets a few seconds.
      let timer: NodeJS.Timeout | undefined;
      const drained = await Promise.race([
        nc.drain().then(
          () => true,
          () => false,
        ),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), CLOSE_DRAIN_MS))),
      ]);
      clearTimeout(timer);
      if (!drained && !nc.isClosed()) {
        await Promise.race([nc.close().catch(() => undefined), new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_DRAIN_MS)))]);
        clearTimeout(timer);
      }
    },
  };
}
