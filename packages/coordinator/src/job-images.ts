import type { DatasetManifest } from '@graft/protocol';
import { augmentedId } from '@graft/vision';
import type { ImageList } from './image-list.js';

/*
 * One job's images as the coordinator tracks them: each image id (a photo's SHA-256, or an
 * augmented copy's id) once, by index, with how many manifest entries stand for it and whether the
 * job still waits for it. A map from id to index and two typed arrays: no object per image, so a
 * job of a million photos costs tens of MB here, not gigabytes.
 */
export class JobImages {
  private readonly index = new Map<string, number>();
  private readonly ids: string[] = [];
  /** Manifest entries per image id (a photo listed under two paths: 2). */
  private readonly entries: Uint32Array;
  /** 1 while the job waits for the image's vector. */
  private readonly waiting: Uint8Array;
  private waitingCount = 0;
  /** Augmented copies in all (entries of the augmented ids). */
  readonly augmented: number;

  constructor(list: ImageList, training: DatasetManifest['training']) {
    const counts: number[] = [];
    const add = (id: string) => {
      const i = this.index.get(id);
      if (i !== undefined) counts[i]++;
      else {
        this.index.set(id, this.ids.length);
        this.ids.push(id);
        counts.push(1);
      }
    };
    const t = training;
    const copies = t?.augment ? (t.augmentCopies ?? 0) : 0;
    let augmented = 0;
    for (let e = 0; e < list.length; e++) {
      const sha = list.sha(e);
      add(sha);
      // Training images only: validation and test images are never augmented.
      if (copies && list.split(e) === 'train') {
        for (let k = 0; k < copies; k++) add(augmentedId(sha, t!.augment!, k));
        augmented += copies;
      }
    }
    this.entries = Uint32Array.from(counts);
    this.waiting = new Uint8Array(this.ids.length);
    this.augmented = augmented;
  }

  /** Image ids the job still waits for. */
  get size(): number {
    return this.waitingCount;
  }

  /** Whether the job waits for this image. */
  has(id: string): boolean {
    const i = this.index.get(id);
    return i !== undefined && this.waiting[i] === 1;
  }

  /** The ids the job waits for. */
  *keys(): IterableIterator<string> {
    for (let i = 0; i < this.ids.length; i++) if (this.waiting[i]) yield this.ids[i];
  }

  /** Every image id of the job, once. */
  all(): readonly string[] {
    return this.ids;
  }

  /** How many manifest entries stand for an image (0: not the job's). */
  entriesOf(id: string): number {
    const i = this.index.get(id);
    return i === undefined ? 0 : this.entries[i];
  }

  /** The job waits for this image (again). */
  wait(id: string): void {
    const i = this.index.get(id);
    if (i === undefined || this.waiting[i]) return;
    this.waiting[i] = 1;
    this.waitingCount++;
  }

  /** Stops waiting for an image. @returns its manifest entries, or 0 when the job was not waiting for it. */
  settle(id: string): number {
    const i = this.index.get(id);
    if (i === undefined || !this.waiting[i]) return 0;
    this.waiting[i] = 0;
    this.waitingCount--;
    return this.entries[i];
  }
}
