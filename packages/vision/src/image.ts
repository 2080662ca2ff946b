import sharp from 'sharp';
import { ImageError } from './errors.js';

/** Limits that protect a worker from hostile images. */
export interface DecodeLimits {
  /** Largest accepted file, bytes. Default 50 MiB. */
  maxBytes?: number;
  /** Largest accepted width x height, pixels. Default 100 megapixels (a 10,000 x 10,000 image). */
  maxPixels?: number;
}

const DEFAULT_DECODE_LIMITS: Required<DecodeLimits> = { maxBytes: 50 * 1024 * 1024, maxPixels: 100_000_000 };

/** Fills the defaults of unset limits. @throws RangeError for a limit that is not a positive integer. */
export function resolveDecodeLimits(limits: DecodeLimits = {}): Required<DecodeLimits> {
  const r = { maxBytes: limits.maxBytes ?? DEFAULT_DECODE_LIMITS.maxBytes, maxPixels: limits.maxPixels ?? DEFAULT_DECODE_LIMITS.maxPixels };
  for (const k of ['maxBytes', 'maxPixels'] as const)
    if (!Number.isInteger(r[k]) || r[k] < 1) throw new RangeError(`limits.${k} must be a positive integer, got ${r[k]}`);
  return r;
}

// libvips keeps its own caches and threads; a worker decodes each image once. Photos decode in
// parallel on libuv's pool (a task's images at once), so libvips's own threads per image would only
// contend with them and with ONNX Runtime's for the same cores: one each (about 10 % less CPU per
// photo measured on clothing-small's 400 x 533 JPEGs).
sharp.cache(false);
sharp.concurrency(1);

/**
 * How an image is cut after it is resized (augmented copies): a size x size window at (left, top)
 * of the image resized to `full` x `full`, mirrored or not.
 */
export interface DecodeWindow {
  full: number;
  left: number;
  top: number;
  flip: boolean;
}

/**
 * Decodes any image sharp reads (JPEG, PNG, WebP, GIF, TIFF, AVIF...), applies EXIF
 * orientation, converts grayscale/CMYK/alpha to sRGB, and resizes to size x size
 * (bilinear, aspect ratio not kept, as retrain.py did).
 * @returns size*size*3 RGB bytes, row-major (HWC).
 * @throws ImageError (EMPTY, TOO_LARGE, DECODE_FAILED) naming the problem.
 */
export async function decodeImage(bytes: Uint8Array, size: number, limits: DecodeLimits = {}): Promise<Uint8Array> {
  return decodeResized(bytes, size, limits);
}

/**
 * graft's one decode-and-resize rule, used for every vector (plain and augmented): the rule is
 * part of every backbone fingerprint's meaning, so there is exactly one copy of it. With a window,
 * the image is resized to window.full first, then the window cut out (and mirrored).
 * @throws ImageError (EMPTY, TOO_LARGE, DECODE_FAILED) naming the problem.
 */
export async function decodeResized(bytes: Uint8Array, size: number, limits: DecodeLimits = {}, window?: DecodeWindow): Promise<Uint8Array> {
  const { maxBytes, maxPixels } = resolveDecodeLimits(limits);
  if (bytes.byteLength === 0) throw new ImageError('EMPTY', 'file is empty (0 bytes)');
  if (bytes.byteLength > maxBytes) throw new ImageError('TOO_LARGE', `file is ${bytes.byteLength} bytes, over the ${maxBytes}-byte limit`);
  const full = window?.full ?? size;
  try {
    let img = sharp(bytes, { limitInputPixels: maxPixels, failOn: 'error' })
      .rotate()
      .toColourspace('srgb')
      .removeAlpha()
      .resize(full, full, { fit: 'fill', kernel: 'linear' });
    if (window && full > size) img = img.extract({ left: window.left, top: window.top, width: size, height: size });
    if (window?.flip) img = img.flop();
    const { data, info } = await img.raw().toBuffer({ resolveWithObject: true });
    if (info.channels === 3) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    return toRgb(data, info.channels);
  } catch (err) {
    const msg = (err as Error).message ?? String(err);
    if (/pixel limit/i.test(msg)) throw new ImageError('TOO_LARGE', `image is over the ${maxPixels}-pixel limit`, { cause: err });
    throw new ImageError('DECODE_FAILED', `not a readable image: ${msg.split('\n')[0]}`, { cause: err });
  }
}

function toRgb(data: Uint8Array, channels: number): Uint8Array {
  const n = data.length / channels;
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const g = data[i * channels];
    out[i * 3] = g;
    out[i * 3 + 1] = channels >= 3 ? data[i * channels + 1] : g;
    out[i * 3 + 2] = channels >= 3 ? data[i * channels + 2] : g;
  }
  return out;
}

/** File extensions graft treats as images when scanning a folder. */
export const IMAGE_EXTENSIONS: ReadonlySet<string> = new Set(['.jpg', '.jpeg', '.png', '.webp', '.gif', '.tif', '.tiff', '.avif']);

/**
 * What kind of image a file's first bytes say it is (JPEG, PNG, GIF, WebP, TIFF, AVIF/HEIF, BMP), or
 * undefined when they are no image's: what a list may name is checked by content, not by its name.
 */
export function imageKind(head: Uint8Array): string | undefined {
  const at = (i: number, ...b: number[]) => b.every((x, k) => head[i + k] === x);
  const ascii = (i: number, t: string) => [...t].every((ch, k) => head[i + k] === ch.charCodeAt(0));
  if (at(0, 0xff, 0xd8, 0xff)) return 'jpeg';
  if (at(0, 0x89, 0x50, 0x4e, 0x47)) return 'png';
  if (ascii(0, 'GIF8')) return 'gif';
  if (ascii(0, 'RIFF') && ascii(8, 'WEBP')) return 'webp';
  if (at(0, 0x49, 0x49, 0x2a, 0x00) || at(0, 0x4d, 0x4d, 0x00, 0x2a)) return 'tiff';
  if (ascii(4, 'ftyp') && ['avif', 'avis', 'heic', 'heix', 'mif1'].some((b) => ascii(8, b))) return 'avif';
  if (ascii(0, 'BM')) return 'bmp';
  return undefined;
}
