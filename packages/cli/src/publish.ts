import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import {
  Split,
  VectorDType,
  codecs,
  createJobRecord,
  manifestSubject,
  queuedStatus,
  type Bus,
  type DatasetManifest,
  type TrainingOptions,
} from '@graft/protocol';
import { backboneRequest, type BackboneOverrides } from '@graft/vision';
import { createProgress } from './progress.js';
import { scanDataset, type ScanResult } from './scan.js';

export interface PublishOptions {
  name?: string;
  /** auto (default), a catalogue id, or a model path/URL. */
  backbone?: string;
  overrides?: BackboneOverrides;
  /** Only what the user gave: absent options take the coordinator's defaults. */
  training?: TrainingOptions;
  vectorDType?: 'float32' | 'float16';
  /** TSV of `path<TAB>train|validation|test` (paths relative to the folder) fixing splits. */
  splitsFile?: string;
  /** Print progress (default true). */
  progress?: boolean;
}

export interface Published {
  jobId: string;
  scan: ScanResult;
  uploaded: number;
  alreadyStored: number;
}

/** The object store's digest of bytes whose hex SHA-256 is given ("SHA-256=" + base64url). */
function objectDigest(sha256Hex: string): string {
  return `SHA-256=${Buffer.from(sha256Hex, 'hex').toString('base64').replace(/\+/g, '-').replace(/\//g, '_')}`;
}

/** A job id: time-ordered, unique, and a valid subject token. */
export function newJobId(): string {
  return `j${Date.now().toString(36)}${randomBytes(4).toString('hex')}`;
}

async function readSplits(file: string): Promise<Map<string, Split>> {
  const map = new Map<string, Split>();
  const names: Record<string, Split> = { train: Split.SPLIT_TRAIN, training: Split.SPLIT_TRAIN, validation: Split.SPLIT_VALIDATION, val: Split.SPLIT_VALIDATION, test: Split.SPLIT_TEST, testing: Split.SPLIT_TEST };
  for (const [i, line] of (await readFile(file, 'utf8')).split('\n').entries()) {
    if (!line.trim()) continue;
    const [path, split] = line.split('\t');
    const s = names[split?.trim().toLowerCase() ?? ''];
    if (s === undefined) throw new Error(`${file}:${i + 1}: split must be train, validation or test, got ${JSON.stringify(split)}`);
    map.set(path.trim(), s);
  }
  return map;
}

/**
 * Scans DIR, uploads new images to the image store (content-addressed: a photo already
 * there is not sent again), and publishes the manifest. Nothing is published if the
 * folder or options are bad.
 * @throws Error naming the folder, file or option at fault.
 */
export async function publishDataset(bus: Bus, dir: string, o: PublishOptions = {}): Promise<Published> {
  const show = o.progress ?? true;
  const ref = backboneRequest(o.backbone ?? 'auto', o.overrides); // validates before any upload
  const splits = o.splitsFile ? await readSplits(o.splitsFile) : undefined;
  const scanBar = show ? createProgress('scanning') : undefined;
  const scan = await scanDataset(dir, { onFile: (d, t) => scanBar?.update(d, t) });
  scanBar?.done();
  if (scan.images.length === 0) throw new Error(`${dir} has no images`);
  for (const s of scan.skipped) if (show) process.stderr.write(`skipped ${s.path}: ${s.reason}\n`);

  const jobId = newJobId();
  const manifest: DatasetManifest = codecs.manifest.create({
    jobId,
    datasetId: createHash('sha256').update(scan.images.map((i) => `${i.path}\t${i.sha256}`).sort().join('\n')).digest('hex').slice(0, 16),
    name: o.name ?? dir.split('/').filter(Boolean).pop() ?? 'dataset',
    classes: scan.classes,
    images: scan.images.map((i) => ({ sha256: i.sha256, label: i.label, path: i.path, sizeBytes: i.sizeBytes, split: splits?.get(i.path) ?? Split.SPLIT_UNSPECIFIED })),
    backbone: ref,
    training: o.training ?? {},
    skipped: scan.skipped,
    createdAtMs: Date.now(),
    vectorDtype: o.vectorDType === 'float16' ? VectorDType.VECTOR_DTYPE_FLOAT16 : VectorDType.VECTOR_DTYPE_FLOAT32,
  });
  const bytes = codecs.manifest.encode(manifest);
  const maxPayload = bus.nc.info?.max_payload ?? 1024 * 1024;
  if (bytes.byteLength > maxPayload) {
    throw new Error(`the manifest of ${dir} is ${bytes.byteLength} bytes, over the server's ${maxPayload}-byte max_payload: raise max_payload in nats-server's config or split the dataset`);
  }

  // Upload: unique contents only, a few at a time.
  const unique = [...new Map(scan.images.map((i) => [i.sha256, i])).values()];
  const bar = show ? createProgress('uploading') : undefined;
  let uploaded = 0;
  let stored = 0;
  let done = 0;
  let next = 0;
  const worker = async () => {
    while (next < unique.length) {
      const img = unique[next++];
      const info = await bus.images.info(img.sha256);
      // Stored only if its digest is this photo's: an object of that name holding other bytes is replaced.
      if (info && !info.deleted && info.size === img.sizeBytes && info.digest === objectDigest(img.sha256)) stored++;
      else {
        await bus.images.putBlob({ name: img.sha256, description: img.path }, new Uint8Array(await readFile(img.file)));
        uploaded++;
      }
      bar?.update(++done, unique.length);
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  bar?.done(show ? `uploaded ${uploaded} images (${stored} already stored)` : undefined);

  // A queued record first, so `graft status` sees the job at once; the coordinator takes over.
  await createJobRecord(bus, queuedStatus(manifest));
  await bus.js.publish(manifestSubject(jobId), bytes, { msgID: jobId });
  return { jobId, scan, uploaded, alreadyStored: stored };
}
