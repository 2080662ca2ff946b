import { JetStreamApiError, type JetStreamManager } from '@nats-io/jetstream';

/** Creates a durable consumer, or leaves an existing one as it is (idempotent, safe from many processes). */
export async function ensureConsumer(jsm: JetStreamManager, stream: string, cfg: Parameters<JetStreamManager['consumers']['add']>[1]): Promise<void> {
  try {
    await jsm.consumers.info(stream, cfg.durable_name!);
    return;
  } catch (err) {
    if (!(err instanceof JetStreamApiError) || err.status !== 404) throw err;
  }
  await jsm.consumers.add(stream, cfg);
}
