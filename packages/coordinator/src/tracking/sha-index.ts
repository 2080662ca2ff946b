import { randomBytes } from 'node:crypto';

/** Bytes of a SHA-256. */
export const SHA_BYTES = 32;

/** A SHA-256 as manifests and ids write it: 64 lowercase hex digits. */
export const SHA256_HEX = /^[0-9a-f]{64}$/;

/** Parses a SHA-256 written as {@link SHA256_HEX} (only so: an id in capitals is another id) into `into` at `at`. @returns false for anything else. */
export function parseSha(hex: string, into: Buffer, at = 0): boolean {
  return SHA256_HEX.test(hex) && into.write(hex, at, SHA_BYTES, 'hex') === SHA_BYTES;
}

/*
 * A set of SHA-256s in typed arrays, each numbered in the order it was added: 32 bytes a hash
 * (none when it indexes a column of hashes held elsewhere, see {@link ShaIndex.distinct}) and 8 of
 * table, against about 130 for a hex string and its Map entry. The hashes come from a manifest,
 * which anyone may write, so slots are chosen by a hash of all 32 bytes under a seed drawn per
 * index: hashes crafted to share slots would have to know it.
 */
export class ShaIndex {
  private keys: Buffer = Buffer.alloc(0);
  /** When the keys are a column held elsewhere: where key n lies in it, in hashes. */
  private first: Uint32Array | undefined;
  /** Open addressing: 0 empty, else the key's number + 1. */
  private table = new Int32Array(16);
  private count = 0;
  private readonly seed = randomBytes(4).readUInt32LE(0);
  private readonly scratch = Buffer.alloc(SHA_BYTES);

  constructor(expected = 0) {
    this.reserve(expected);
  }

  /**
   * The distinct hashes of a column (hash i at 32i), indexed where they lie: the column is kept, not
   * copied, and must not change while the index is used.
   * @returns the index and each hash's number in it.
   */
  static distinct(column: Buffer, count: number): { index: ShaIndex; numbers: Uint32Array } {
    const index = new ShaIndex();
    index.keys = column;
    index.first = new Uint32Array(count);
    index.reserve(count);
    const numbers = new Uint32Array(count);
    for (let i = 0; i < count; i++) {
      const slot = index.slot(column, i * SHA_BYTES);
      const n = index.table[slot] - 1;
      if (n >= 0) numbers[i] = n;
      else {
        numbers[i] = index.count;
        index.first[index.count] = i;
        index.table[slot] = ++index.count;
      }
    }
    index.first = index.first.slice(0, index.count);
    return { index, numbers };
  }

  get size(): number {
    return this.count;
  }

  /** Adds the hash at `buf[at, at + 32)` if new. @returns its number. */
  add(buf: Uint8Array, at: number): number {
    if (this.first) throw new Error('an index over a column takes no hashes of its own');
    const found = this.find(buf, at);
    if (found >= 0) return found;
    this.reserve(this.count + 1);
    const n = this.count++;
    this.keys.set(buf.subarray(at, at + SHA_BYTES), n * SHA_BYTES);
    this.table[this.slot(buf, at)] = n + 1;
    return n;
  }

  /** The number of the hash at `buf[at, at + 32)`, or -1. */
  find(buf: Uint8Array, at: number): number {
    return this.table[this.slot(buf, at)] - 1;
  }

  /** The number of a hash given as hex, or -1 (also for text that is not a SHA-256). */
  findHex(hex: string): number {
    return parseSha(hex, this.scratch) ? this.find(this.scratch, 0) : -1;
  }

  /** Hash number n as hex. */
  hex(n: number): string {
    const at = this.keyAt(n);
    return this.keys.toString('hex', at, at + SHA_BYTES);
  }

  private keyAt(n: number): number {
    return (this.first ? this.first[n] : n) * SHA_BYTES;
  }

  /** The table slot that holds the hash, or the empty one where it would go. */
  private slot(buf: Uint8Array, at: number): number {
    const mask = this.table.length - 1;
    let i = this.mix(buf, at) & mask;
    for (;;) {
      const n = this.table[i];
      if (n === 0) return i;
      const key = this.keyAt(n - 1);
      if (this.keys.compare(buf, at, at + SHA_BYTES, key, key + SHA_BYTES) === 0) return i;
      i = (i + 1) & mask;
    }
  }

  private mix(buf: Uint8Array, at: number): number {
    let h = this.seed;
    for (let k = at; k < at + SHA_BYTES; k += 4) {
      h = Math.imul(h ^ (buf[k] | (buf[k + 1] << 8) | (buf[k + 2] << 16) | (buf[k + 3] << 24)), 0x9e3779b1);
      h ^= h >>> 15;
    }
    return Math.imul(h ^ (h >>> 13), 0x85ebca6b) >>> 0;
  }

  /** Room for n hashes, the table at most half full (doubling: a million hashes cost 20 rebuilds). */
  private reserve(n: number): void {
    if (!this.first && n * SHA_BYTES > this.keys.length) {
      const keys = Buffer.alloc(Math.max(n, (2 * this.keys.length) / SHA_BYTES, 64) * SHA_BYTES);
      this.keys.copy(keys, 0, 0, this.count * SHA_BYTES);
      this.keys = keys;
    }
    if (2 * n <= this.table.length) return;
    let size = this.table.length;
    while (2 * n > size) size *= 2;
    this.table = new Int32Array(size);
    for (let k = 0; k < this.count; k++) {
      const key = this.keyAt(k);
      this.table[this.slot(this.keys, key)] = k + 1;
    }
  }
}
