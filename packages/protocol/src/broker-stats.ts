import { handles, type Bus } from './bus.js';
import { BUCKET_STREAMS, STREAMS } from './names.js';

/*
 * The broker's own numbers for graft's streams and stores, read from JetStream's stream and consumer
 * info (read-only; Debian ships no NATS exporter): what the coordinator exports as metrics.
 */

/** Every graft stream by a short, fixed name: the `store` label of the broker metrics. */
export const BROKER_STORES: Readonly<Record<string, string>> = {
  tasks: STREAMS.tasks,
  results: STREAMS.results,
  manifests: STREAMS.manifests,
  manifest_pages: STREAMS.manifestPages,
  events: STREAMS.events,
  dead_letters: STREAMS.deadLetters,
  dead_letters_results: STREAMS.resultDeadLetters,
  dead_letters_tasks: STREAMS.taskDeadLetters,
  images: STREAMS.images,
  prepared: STREAMS.prepared,
  ...BUCKET_STREAMS,
};

/** One store's size and cap (maxBytes -1: no cap but the server's own). */
export interface StoreStats {
  store: string;
  bytes: number;
  messages: number;
  maxBytes: number;
}

/** A stream's consumers, summed: messages waiting, delivered and unacknowledged, redelivered. */
export interface ConsumerStats {
  store: string;
  consumers: number;
  pending: number;
  ackPending: number;
  redelivered: number;
}

export interface BrokerStats {
  stores: StoreStats[];
  consumers: ConsumerStats[];
  /** The account's JetStream file and memory storage in use, bytes. */
  storageBytes: number;
}

/** Streams whose consumers graft reads from (the others are read by gets and watches). */
const CONSUMED = ['tasks', 'results', 'manifests'] as const;

/** Reads every graft store's numbers. A store that does not exist (yet) is left out. */
export async function brokerStats(bus: Bus): Promise<BrokerStats> {
  const stores = (
    await Promise.all(
      Object.entries(BROKER_STORES).map(async ([store, stream]) => {
        const si = await handles(bus)
          .jsm.streams.info(stream)
          .catch(() => undefined);
        return si ? { store, bytes: si.state.bytes, messages: si.state.messages, maxBytes: si.config.max_bytes ?? -1 } : undefined;
      }),
    )
  ).filter((s): s is StoreStats => s !== undefined);
  const consumers: ConsumerStats[] = [];
  for (const store of CONSUMED) {
    const c: ConsumerStats = { store, consumers: 0, pending: 0, ackPending: 0, redelivered: 0 };
    for await (const ci of handles(bus).jsm.consumers.list(BROKER_STORES[store])) {
      c.consumers++;
      c.pending += ci.num_pending;
      c.ackPending += ci.num_ack_pending;
      c.redelivered += ci.num_redelivered;
    }
    consumers.push(c);
  }
  const account = await handles(bus).jsm.getAccountInfo();
  return { stores, consumers, storageBytes: account.storage + account.memory };
}
