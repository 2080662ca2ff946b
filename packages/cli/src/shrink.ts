import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { inPool } from '@graft/protocol';
import type { ScannedImage } from './scan.js';

/*
 * graft publish --max-side N: a photo larger than the backbone needs is stored as a re-encoded
 * copy of longer side N, so every worker fetches and decodes a few hundred KB instead of a 12 MP
 * JPEG, once per backbone rather than once per image per run. The copies are kept on the
 * publisher's disk by (original SHA-256, N), so publishing again shrinks nothing twice.
 */

/** Smallest --max-side: below this every backbone would be fed upscaled pixels. */
export const MIN_MAX_SIDE = 64;

/** JPEG settings of stored copies: high quality, no chroma subsampling (the backbone sees colour edges). */
const COPY_JPEG = { quality: 92, chromaSubsampling: '4:4:4' } as const;

/**
 * A photo's copy of longer side maxSide (orientation applied, sRGB JPEG), or undefined when it is
 * no larger than that or sharp cannot read it (it is then stored as it is, and a worker names
 * the problem as for any image).
 */
export async function shrinkPhoto(bytes: Uint8Array, maxSide: number): Promise<Uint8Array | undefined> {
  try {
    const meta = await sharp(bytes).metadata();
    const [w, h] = (meta.orientation ?? 1) >= 5 ? [meta.height, meta.width] : [meta.width, meta.height];
    if (!w || !h || Math.max(w, h) <= maxSide) return undefined;
    return new Uint8Array(
      await sharp(bytes, { failOn: 'error', limitInputPixels: 100_000_000 })
        .rotate()
        .resize(maxSide, maxSide, { fit: 'inside' })
        .toColourspace('srgb')
        .jpeg(COPY_JPEG)
        .toBuffer(),
    );
  } catch {
    return undefined; // unreadable as an image: published as it is, and the worker names the problem
  }
}

/**
 * Replaces each local image larger than maxSide by its stored copy (file, sha256, size; the
 * original's hash kept in originalSha256), shrinking on all cores, copies cached in cacheDir.
 * @returns how many images now point at a copy.
 */
export async function shrinkImages(
  images: (ScannedImage & { originalSha256?: string })[],
  maxSide: number,
  cacheDir: string,
  onProgress?: (done: number, total: number) => void,
): Promise<number> {
  const dir = join(cacheDir, String(maxSide));
  await mkdir(dir, { recursive: true });
  let shrunk = 0;
  await inPool(
    images.filter((i) => i.file),
    availableParallelism(),
    async (img) => {
      const cached = join(dir, `${img.sha256}.jpg`);
      const small = join(dir, `${img.sha256}.small`); // marks "no larger than maxSide": nothing to do next time
      let copy = await readFile(cached).catch(() => undefined); // not made yet: made below
      if (
        !copy &&
        !(await readFile(small).then(
          () => true,
          () => false,
        ))
      ) {
        const made = await shrinkPhoto(new Uint8Array(await readFile(img.file!)), maxSide);
        if (made) {
          await writeFile(`${cached}.tmp`, made);
          await rename(`${cached}.tmp`, cached);
          copy = Buffer.from(made);
        } else await writeFile(small, '');
      }
      if (copy) {
        img.originalSha256 = img.sha256;
        img.sha256 = createHash('sha256').update(copy).digest('hex');
        img.sizeBytes = copy.byteLength;
        img.file = cached;
        shrunk++;
      }
    },
    onProgress,
  );
  return shrunk;
}
