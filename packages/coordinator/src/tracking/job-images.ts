import type { DatasetManifest } from '@graft/protocol';
import { augmentedId, parseImageId } from '@graft/vision';
import type { ManifestEntries } from './manifest-entries.js';
import { ShaIndex } from './sha-index.js';

/*
 * One job's images as the coordinator tracks them: each image id (a photo's SHA-256, or an
 * augmented copy's id) once, with how many manifest entries stand for it and whether the job still
 * waits for it. Ids are numbers, not strings: photo p's own id is slot p * (copies + 1), its copy k
 * slot p * (copies + 1) + 1 + k, found by a {@link ShaIndex} over the list's column of hashes.
 * About 15 bytes a photo here, and 5 a copy.
 */
export class JobImages {
  private readonly photos: ShaIndex;
  /** Slots per photo: itself and its copies. */
  private readonly stride: number;
  private readonly spec: string;
  /** Manifest entries per slot (a photo listed under two paths: 2; 0: no such image in the job, e.g. a copy of a test photo). */
  private readonly entries: Uint32Array;
  /** 1 while the job waits for the slot's vector. */
  private readonly waiting: Uint8Array;
  private waitingCount = 0;
  /** Augmented copies in all (entries of the augmented ids). */
  readonly augmented: number;

  constructor(list: ManifestEntries, training: DatasetManifest['training']) {
    const copies = training?.augment ? (training.augmentCopies ?? 0) : 0;
    this.spec = training?.augment ?? '';
    this.stride = copies + 1;
    // The photos' hashes stay in the list's column (the job keeps both): 4 bytes a photo here, not 32.
    const { index, numbers: photoOf } = ShaIndex.distinct(list.shaColumn, list.length);
    this.photos = index;
    this.entries = new Uint32Array(this.photos.size * this.stride);
    let augmented = 0;
    for (let e = 0; e < list.length; e++) {
      const slot = photoOf[e] * this.stride;
      this.entries[slot]++;
      // Training images only: validation and test images are never augmented.
      if (copies && list.split(e) === 'train') {
        for (let k = 1; k <= copies; k++) this.entries[slot + k]++;
        augmented += copies;
      }
    }
    this.waiting = new Uint8Array(this.entries.length);
    this.augmented = augmented;
  }

  /** Image ids the job still waits for. */
  get size(): number {
    return this.waitingCount;
  }

  /** How many image ids the job has (photos once, and their copies). */
  get count(): number {
    let n = 0;
    for (let s = 0; s < this.entries.length; s++) if (this.entries[s]) n++;
    return n;
  }

  /** Whether the job waits for this image. */
  has(id: string): boolean {
    const s = this.slotOf(id);
    return s >= 0 && this.waiting[s] === 1;
  }

  /** The ids the job waits for. */
  *keys(): IterableIterator<string> {
    for (let s = 0; s < this.waiting.length; s++) if (this.waiting[s]) yield this.idOf(s);
  }

  /** Every image id of the job, once, each photo followed by its copies. */
  *all(): IterableIterator<string> {
    for (let s = 0; s < this.entries.length; s++) if (this.entries[s]) yield this.idOf(s);
  }

  /** How many manifest entries stand for an image (0: not the job's). */
  entriesOf(id: string): number {
    const s = this.slotOf(id);
    return s < 0 ? 0 : this.entries[s];
  }

  /** The job waits for this image (again). */
  wait(id: string): void {
    const s = this.slotOf(id);
    if (s < 0 || this.waiting[s]) return;
    this.waiting[s] = 1;
    this.waitingCount++;
  }

  /** Stops waiting for an image. @returns its manifest entries, or 0 when the job was not waiting for it. */
  settle(id: string): number {
    const s = this.slotOf(id);
    if (s < 0 || !this.waiting[s]) return 0;
    this.waiting[s] = 0;
    this.waitingCount--;
    return this.entries[s];
  }

  /** The slot of an id of this job's, or -1 (another job's copy, a copy past the job's count, not an id). */
  private slotOf(id: string): number {
    if (id.length === 64) {
      const p = this.photos.findHex(id);
      return p < 0 ? -1 : p * this.stride;
    }
    const parsed = parseImageId(id);
    const a = parsed?.augment;
    if (!a || a.spec !== this.spec || !(a.variant < this.stride - 1) || augmentedId(parsed.sha256, a.spec, a.variant) !== id) return -1;
    const p = this.photos.findHex(parsed.sha256);
    const s = p < 0 ? -1 : p * this.stride + 1 + a.variant;
    return s >= 0 && this.entries[s] ? s : -1;
  }

  private idOf(slot: number): string {
    const p = Math.floor(slot / this.stride);
    const k = slot - p * this.stride;
    const sha = this.photos.hex(p);
    return k ? augmentedId(sha, this.spec, k - 1) : sha;
  }
}
