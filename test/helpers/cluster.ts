import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isTerminal, openBus, readJob, type BusHandles, type JobStatus } from '@graft/protocol/testing';
import { initBackend } from '@graft/vision';
import { generateSampleSet, publishDataset, type Published, type SampleClass } from '@graft/cli';
import type { TrainingOptions } from '@graft/protocol/testing';
import { writeConvModel, writeTinyModel } from './models.js';
import { startTestNats, type TestNats } from './nats.js';
import { spawnGraft, waitFor, type Spawned } from './process.js';

/** A real cluster for one test: nats-server, a coordinator process, worker processes. */
export class TestCluster {
  readonly workers: Spawned[] = [];
  coordinator?: Spawned;
  bus!: BusHandles;
  nats!: TestNats;
  work!: string;
  private readonly all: Spawned[] = [];

  constructor(
    private readonly coordinatorArgs: string[] = [],
    private readonly env: NodeJS.ProcessEnv = {},
    /** Whether the coordinator may load file:// backbones (the tests' small models are files). */
    private readonly allowModelFiles = true,
  ) {}

  async start(opts: { workers?: number; coordinator?: boolean; natsConfig?: string; busUser?: { user: string; pass: string } } = {}): Promise<this> {
    this.nats = await startTestNats(opts.natsConfig);
    this.work = await mkdtemp(join(tmpdir(), 'graft-cluster-'));
    if (opts.coordinator ?? true) this.startCoordinator();
    for (let i = 0; i < (opts.workers ?? 0); i++) this.startWorker();
    // With a coordinator, let it create the topology (with its options) and only open it here.
    const withCoordinator = opts.coordinator ?? true;
    this.bus = await waitFor(
      () => openBus({ servers: this.nats.url, ...(opts.busUser ?? {}) }, { create: !withCoordinator }).catch(() => undefined),
      60_000,
      'the coordinator to create the topology',
    );
    return this;
  }

  get url(): string {
    return this.nats.url;
  }

  startCoordinator(extraEnv: NodeJS.ProcessEnv = {}): Spawned {
    const allow = this.allowModelFiles ? ['--allow-model-files'] : [];
    this.coordinator = spawnGraft(['coordinator', '--nats', this.nats.url, ...allow, ...this.coordinatorArgs], {
      GRAFT_HOME: this.work,
      ...this.env,
      ...extraEnv,
    });
    this.all.push(this.coordinator);
    return this.coordinator;
  }

  startWorker(args: string[] = [], extraEnv: NodeJS.ProcessEnv = {}): Spawned {
    const w = spawnGraft(['worker', '--nats', this.nats.url, ...args], { GRAFT_HOME: this.work, ...this.env, ...extraEnv });
    this.workers.push(w);
    this.all.push(w);
    return w;
  }

  /** Waits for a job to end; returns its final record. */
  async waitForJob(jobId: string, timeoutMs: number, onPoll?: (s: JobStatus) => void | Promise<void>): Promise<JobStatus> {
    return waitFor(
      async () => {
        const s = await readJob(this.bus, jobId).catch(() => undefined);
        if (s) await onPoll?.(s);
        return s && isTerminal(s.state) ? s : undefined;
      },
      timeoutMs,
      `job ${jobId} to end`,
    );
  }

  /** A small convolutional model in the work dir (a few ms per image: tasks take real time). */
  async convModel(): Promise<string> {
    await initBackend();
    const dir = join(this.work, 'conv-model');
    await mkdir(dir, { recursive: true });
    return writeConvModel(dir);
  }

  /** A 3-d mean-colour model in the work dir: extraction costs nothing. */
  async tinyModel(size = 4): Promise<string> {
    await initBackend();
    const dir = join(this.work, `tiny-model-${size}`);
    await mkdir(dir, { recursive: true });
    return writeTinyModel(dir, size);
  }

  /**
   * The setup most tests share: `perClass` generated photos of each class (seeded), published as one
   * job as the cli does (the tiny model unless another backbone is named). @returns the job and its folder.
   */
  async publishShapes(
    perClass: number,
    seed: number,
    o: { classes?: SampleClass[]; backbone?: string; training?: TrainingOptions; folder?: string } = {},
  ): Promise<Published & { data: string }> {
    const data = await generateSampleSet(join(this.work, o.folder ?? `shapes-${seed}`), perClass, seed, o.classes);
    const p = await publishDataset(this.bus, data, {
      progress: false,
      backbone: o.backbone ?? (await this.tinyModel()),
      training: o.training ?? { epochs: 2 },
    });
    return { ...p, data };
  }

  /** Output of every process, for failure messages. */
  logs(): string {
    return this.all.map((p, i) => `--- process ${i}\n${p.output().slice(-4000)}`).join('\n');
  }

  async stop(): Promise<void> {
    await this.bus?.close().catch(() => undefined);
    await Promise.all(this.all.map((p) => p.stop(5000)));
    await this.nats?.cleanup();
    if (this.work) await rm(this.work, { recursive: true, force: true });
  }
}

/** A job's counts as a plain object (protobuf leaves zero fields on the prototype). */
export function countsOf(s: JobStatus) {
  const c = s.counts!;
  return { total: c.total, cached: c.cached, extracted: c.extracted, failed: c.failed };
}
