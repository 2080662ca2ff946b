import { SHA_BYTES, ShaIndex, parseSha } from './sha-index.js';
import { splitOf, splitPercents, type DatasetManifest, type ImageEntry, type SplitName } from '@graft/protocol';

/** A job's manifest without its image list: what the coordinator keeps of the header once the list is an {@link ManifestEntries}. */
export type JobManifest = Omit<DatasetManifest, 'images'>;

/** What a list needs of its manifest's header. */
type EntriesHeader = Pick<DatasetManifest, 'classes' | 'training'> & Partial<Pick<DatasetManifest, 'predict'>>;

/** The sets, by the number an {@link ManifestEntries} keeps for each entry. */
const SPLITS: readonly SplitName[] = ['train', 'validation', 'test'];

/** What the list refuses to hold: an entry's label outside the classes. */
const NO_CLASS = 0xffffffff;

/** Bytes of paths and list sources a list holds at most (its offsets are 32-bit). */
const MAX_TEXT_BYTES = 0xffffffff;

/** Problems a list keeps word for word; past them it counts (a hostile list of a million bad entries). */
const MAX_PROBLEMS = 1000;

/** Characters of a path or list source an entry may have. */
export const MAX_ENTRY_TEXT = 4096;

/*
 * A job's manifest entries as the coordinator keeps them while the job runs, read from the
 * manifest's pages one at a time and never held as the decoded list: columns instead of an object
 * per entry (the photo's hash as its 32 bytes, the class as a number, the set as a byte, the path
 * and list source as UTF-8 in one buffer), about 80 bytes an entry against the list's 330. Each entry's problems
 * (an unknown class, a bad hash, a path listed twice, text over its bound) are found as it is
 * added, so reading the list is checking it.
 */
export class ManifestEntries {
  /** Each entry's photo hash, 32 bytes at 32i (zeros for an entry whose hash is not one: the list has a problem then). */
  private shas = Buffer.alloc(1024 * SHA_BYTES);
  private count = 0;
  private labels = new Uint32Array(1024);
  private splits = new Uint8Array(1024);
  /** Entry i's path is text[starts[2i], starts[2i+1]), its source text[starts[2i+1], starts[2i+2]). */
  private starts = new Uint32Array(2049);
  private text = Buffer.alloc(64 * 1024);
  private textEnd = 0;
  private readonly classIndex: Map<string, number>;
  private readonly percents: ReturnType<typeof splitPercents>;
  /** First entry by a hash of its path: duplicates found without a set of every path string. */
  private readonly pathHashes = new Map<number, number>();
  /** Paths whose hash met another path's (rare): checked by their text. */
  private readonly collided = new Set<string>();
  readonly perClass: Uint32Array;
  private readonly found: string[] = [];
  private problemCount = 0;

  /** A prediction job's entries' labels are not its classes (graft predict: none, or another job's): not checked. */
  private readonly unlabelled: boolean;

  constructor(header: EntriesHeader) {
    this.unlabelled = Boolean(header.predict);
    this.classIndex = new Map(header.classes.map((c, i) => [c, i]));
    this.percents = splitPercents(header.training);
    this.perClass = new Uint32Array(header.classes.length);
  }

  /** A list of a manifest whose images are in hand (a small manifest, or a test's). */
  static of(manifest: EntriesHeader & Pick<DatasetManifest, 'images'>): ManifestEntries {
    const list = new ManifestEntries(manifest);
    for (const img of manifest.images) list.add(img);
    return list.done();
  }

  /** A list read a page at a time. */
  static async read(header: EntriesHeader, pages: AsyncIterable<readonly ImageEntry[]>): Promise<ManifestEntries> {
    const list = new ManifestEntries(header);
    for await (const page of pages) for (const img of page) list.add(img);
    return list.done();
  }

  get length(): number {
    return this.count;
  }

  /** What is wrong with the entries added, the first {@link MAX_PROBLEMS} word for word, then a count. */
  get problems(): string[] {
    const more = this.problemCount - this.found.length;
    return more ? [...this.found, `and ${more} more problems with entries`] : this.found;
  }

  /** Adds a manifest entry, noting what is wrong with it (the entry is kept either way, so indices match the manifest). */
  add(img: ImageEntry): void {
    const i = this.count;
    const path = img.path ?? '';
    const source = img.source ?? '';
    const sha = img.sha256 ?? '';
    const shown = path.length > 80 ? `${path.slice(0, 80)}...` : path;
    if (path.length > MAX_ENTRY_TEXT || source.length > MAX_ENTRY_TEXT) this.problem(`${shown}: path or source over ${MAX_ENTRY_TEXT} characters`);
    this.grow(i + 1);
    if (!parseSha(sha, this.shas, i * SHA_BYTES)) this.problem(`${shown}: bad sha256 ${JSON.stringify(sha.slice(0, 80))}`);
    const label = this.classIndex.get(img.label ?? '');
    if (label === undefined && !this.unlabelled) this.problem(`${shown}: unknown class ${JSON.stringify((img.label ?? '').slice(0, 80))}`);
    else if (label !== undefined) this.perClass[label]++;
    this.count++;
    this.labels[i] = label ?? NO_CLASS;
    this.splits[i] = SPLITS.indexOf(splitOf({ path, split: img.split }, this.percents));
    this.starts[2 * i + 1] = this.append(path);
    this.starts[2 * i + 2] = this.append(source);
    if (this.seenPath(i)) this.problem(`${shown}: listed twice`);
  }

  sha(i: number): string {
    return this.shas.toString('hex', i * SHA_BYTES, (i + 1) * SHA_BYTES);
  }

  /** Every entry's hash, entry i's at 32i: for indexing them without a string each. */
  get shaColumn(): Buffer {
    return this.shas;
  }

  /** The entry's class, as an index into the manifest's classes. */
  label(i: number): number {
    return this.labels[i];
  }

  split(i: number): SplitName {
    return SPLITS[this.splits[i]];
  }

  path(i: number): string {
    return this.text.toString('utf8', this.starts[2 * i], this.starts[2 * i + 1]);
  }

  /** Where a list named the entry ("<list file>:<line>"), or "" for a folder's. */
  source(i: number): string {
    return this.text.toString('utf8', this.starts[2 * i + 1], this.starts[2 * i + 2]);
  }

  /** The entries of these photos (path and list line), in one pass over the list, the first `limit` of them. */
  entriesOf(shas: ReadonlySet<string>, limit = Infinity): { sha256: string; path: string; source: string }[] {
    const wanted = new ShaIndex(shas.size);
    const scratch = Buffer.alloc(SHA_BYTES);
    for (const sha of shas) if (parseSha(sha, scratch)) wanted.add(scratch, 0);
    const out: { sha256: string; path: string; source: string }[] = [];
    for (let i = 0; i < this.count && out.length < limit; i++)
      if (wanted.find(this.shas, i * SHA_BYTES) >= 0) out.push({ sha256: this.sha(i), path: this.path(i), source: this.source(i) });
    return out;
  }

  /** Every entry is in: the duplicate check's index goes, and the columns shrink to what they hold. */
  private done(): this {
    this.pathHashes.clear();
    this.collided.clear();
    const n = this.count;
    this.shas = Buffer.from(this.shas.subarray(0, n * SHA_BYTES));
    this.labels = this.labels.slice(0, n);
    this.splits = this.splits.slice(0, n);
    this.starts = this.starts.slice(0, 2 * n + 1);
    this.text = Buffer.from(this.text.subarray(0, this.textEnd));
    return this;
  }

  private problem(p: string): void {
    if (this.found.length < MAX_PROBLEMS) this.found.push(p);
    this.problemCount++;
  }

  /** Room for n entries in the columns (doubling, so a million entries cost 20 copies, not a million). */
  private grow(n: number): void {
    if (n <= this.labels.length) return;
    const cap = this.labels.length * 2;
    const labels = new Uint32Array(cap);
    labels.set(this.labels);
    this.labels = labels;
    const splits = new Uint8Array(cap);
    splits.set(this.splits);
    this.splits = splits;
    const starts = new Uint32Array(2 * cap + 1);
    starts.set(this.starts);
    this.starts = starts;
    const shas = Buffer.alloc(cap * SHA_BYTES);
    this.shas.copy(shas);
    this.shas = shas;
  }

  /** Appends UTF-8 text. @returns where the text now ends. */
  private append(s: string): number {
    const need = this.textEnd + Buffer.byteLength(s);
    if (need > MAX_TEXT_BYTES) throw new RangeError(`the manifest's paths and sources pass ${MAX_TEXT_BYTES} bytes`);
    if (need > this.text.length) {
      const text = Buffer.allocUnsafe(Math.min(MAX_TEXT_BYTES, Math.max(need, this.text.length * 2)));
      this.text.copy(text, 0, 0, this.textEnd);
      this.text = text;
    }
    this.textEnd += this.text.write(s, this.textEnd);
    return this.textEnd;
  }

  /** Whether entry i's path was listed before it. */
  private seenPath(i: number): boolean {
    const a = this.starts[2 * i];
    const b = this.starts[2 * i + 1];
    const h = fnv1a(this.text, a, b);
    const first = this.pathHashes.get(h);
    if (first === undefined) {
      this.pathHashes.set(h, i);
      return false;
    }
    if (this.text.compare(this.text, this.starts[2 * first], this.starts[2 * first + 1], a, b) === 0) return true;
    const path = this.path(i);
    if (this.collided.has(path)) return true;
    this.collided.add(path);
    return false;
  }
}

/** FNV-1a, 32 bits, of bytes [a, b). */
function fnv1a(buf: Buffer, a: number, b: number): number {
  let h = 0x811c9dc5;
  for (let k = a; k < b; k++) h = Math.imul(h ^ buf[k], 0x01000193);
  return h >>> 0;
}
