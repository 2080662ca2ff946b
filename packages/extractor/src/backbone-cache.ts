import type { Logger } from 'pino';
import { getModel, type Bus, type ExtractionTask } from '@graft/protocol';
import { backboneFromFiles, filesFromBundle, resolvedFromFields, type Backbone } from '@graft/vision';

/** Backbones kept in memory at once; each can be hundreds of MB. */
const MAX_LOADED_BACKBONES = 2;

/**
 * The backbones a worker has in memory, loaded on first use from the cluster's model store (never
 * from what a manifest names), the least recently used one disposed past MAX_LOADED_BACKBONES.
 */
export class BackboneCache {
  private readonly loaded = new Map<string, Promise<Backbone>>();

  constructor(
    private readonly bus: Bus,
    private readonly log: Logger,
    private readonly onLoaded: (b: Backbone) => void,
    private readonly onUnloaded: (b: Backbone) => void,
    /** Where converted backbones are cached (the model cache's folder). */
    private readonly cacheDir?: string,
  ) {}

  /** Fingerprints of the backbones loaded (or loading). */
  fingerprints(): Set<string> {
    return new Set(this.loaded.keys());
  }

  /** The task's backbone, loaded on first use. */
  get(task: ExtractionTask): Promise<Backbone> {
    const fp = task.backbone!.fingerprint!;
    let b = this.loaded.get(fp);
    if (b) {
      this.loaded.delete(fp); // Map order = use order
      this.loaded.set(fp, b);
      return b;
    }
    b = this.loadFromModelStore(task);
    this.loaded.set(fp, b);
    b.then(
      (x) => {
        const where = x.runtime.provider ? `${x.runtime.name} (${x.runtime.provider} provider)` : x.runtime.name;
        this.log.info(
          {
            backbone: x.info.id,
            fingerprint: x.info.fingerprint,
            dim: x.info.dim,
            runtime: x.runtime.name,
            provider: x.runtime.provider,
            runtimeNote: x.runtime.note,
          },
          `backbone loaded, running on ${where}`,
        );
        this.onLoaded(x);
      },
      () => this.loaded.delete(fp), // the task fails (and is retried); the next one loads it again
    );
    while (this.loaded.size > MAX_LOADED_BACKBONES) {
      const [oldFp, old] = this.loaded.entries().next().value!;
      this.loaded.delete(oldFp);
      // Only one task is inferred at a time, and it is not this one: nothing uses the old model now.
      void old.then(
        (x) => {
          x.dispose();
          this.onUnloaded(x);
          this.log.info({ fingerprint: oldFp }, 'backbone unloaded (least recently used)');
        },
        () => undefined, // never loaded: nothing to free
      );
    }
    return b;
  }

  /** Disposes every loaded backbone. */
  disposeAll(): void {
    for (const b of this.loaded.values())
      void b.then(
        (x) => x.dispose(),
        () => undefined,
      );
    this.loaded.clear();
  }

  /**
   * A task's backbone from the model store, where the coordinator put it when it resolved it:
   * workers never load what a manifest names (no URLs, no local paths), only this, checked
   * against the task's fingerprint.
   */
  private async loadFromModelStore(task: ExtractionTask): Promise<Backbone> {
    const spec = resolvedFromFields(task.backbone!);
    const blobs = await getModel(this.bus, spec.fingerprint);
    if (!blobs) throw new Error(`backbone ${spec.fingerprint} is not in the model store (the coordinator puts it there when it starts a job)`);
    return backboneFromFiles(
      { spec, files: filesFromBundle(blobs.modelJson, blobs.weights, `model store ${spec.fingerprint}`) },
      { cacheDir: this.cacheDir, onRuntimeNote: (note) => this.log.warn({ fingerprint: spec.fingerprint }, note) },
    );
  }
}
