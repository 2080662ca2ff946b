import type { Worker as ClusterWorker } from 'node:cluster';
import { AggregatorRegistry, Counter, Gauge, Registry, collectDefaultMetrics, type MetricObjectWithValues, type MetricValue } from 'prom-client';

type metric = MetricObjectWithValues<MetricValue<string>>;

/*
 * Metrics of a GPU node: each worker process (one per GPU) labels its series with its `gpu`, and the
 * supervisor serves them all on one port with its own (restarts, live workers). A child that does
 * not answer in time is left out of that scrape, counted, instead of failing the node's scrape.
 */

const REQUEST = 'graft:metrics-request';
const RESPONSE = 'graft:metrics-response';
/** How long a scrape waits for each child: under Prometheus's default 10 s, and compose's 5 s. */
export const CHILD_SCRAPE_TIMEOUT_MS = 3000;

type Reply = { type: typeof RESPONSE; id: number; metrics: metric[] };

/** In a child: labels every series with its GPU and answers the supervisor's requests for them. */
export function reportToSupervisor(registry: Registry, gpu: string): void {
  registry.setDefaultLabels({ gpu });
  collectDefaultMetrics({ register: registry });
  process.on('message', (m: { type?: string; id?: number }) => {
    if (m?.type !== REQUEST || m.id === undefined) return;
    const id = m.id;
    void registry.getMetricsAsJSON().then((metrics) => process.send?.({ type: RESPONSE, id, metrics } satisfies Reply));
  });
}

/** The supervisor's own metrics. */
export function supervisorMetrics(registry: Registry, live: () => number) {
  return {
    restarts: new Counter({
      name: 'graft_gpu_worker_restarts_total',
      help: 'GPU worker processes started again after they exited, by GPU',
      labelNames: ['gpu'] as const,
      registers: [registry],
    }),
    live: new Gauge({
      name: 'graft_gpu_workers_live',
      help: 'GPU worker processes running under this supervisor',
      registers: [registry],
      collect() {
        this.set(live());
      },
    }),
    unanswered: new Counter({
      name: 'graft_gpu_worker_scrapes_unanswered_total',
      help: `Scrapes a GPU worker did not answer within ${CHILD_SCRAPE_TIMEOUT_MS / 1000} s (left out of that scrape)`,
      labelNames: ['gpu'] as const,
      registers: [registry],
    }),
  };
}

export type SupervisorMetrics = ReturnType<typeof supervisorMetrics>;

let nextId = 0;

/** Asks one child for its metrics; undefined when it does not answer in time. */
function askChild(child: ClusterWorker, timeoutMs: number): Promise<metric[] | undefined> {
  const id = nextId++;
  return new Promise((resolve) => {
    const timer = setTimeout(() => finish(undefined), timeoutMs);
    const onMessage = (m: Reply) => {
      if (m?.type === RESPONSE && m.id === id) finish(m.metrics);
    };
    const finish = (v: metric[] | undefined) => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
      resolve(v);
    };
    const onExit = () => finish(undefined);
    child.on('message', onMessage);
    child.once('exit', onExit);
    try {
      child.send({ type: REQUEST, id });
    } catch {
      finish(undefined);
    }
  });
}

/** The node's metrics text: every live child's (each with its gpu label) and the supervisor's own. */
export async function nodeMetrics(
  children: ReadonlyMap<string, ClusterWorker>,
  own: Registry,
  m: SupervisorMetrics,
  timeoutMs = CHILD_SCRAPE_TIMEOUT_MS,
): Promise<string> {
  const live = [...children].filter(([, c]) => !c.isDead() && c.isConnected());
  const answers = await Promise.all(live.map(async ([gpu, c]) => [gpu, await askChild(c, timeoutMs)] as const));
  for (const [gpu, a] of answers) if (!a) m.unanswered.inc({ gpu });
  const got = answers.flatMap(([, a]) => (a ? [a] : []));
  const merged = Registry.merge([AggregatorRegistry.aggregate(got), own]);
  return merged.metrics();
}
