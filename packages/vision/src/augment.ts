import { createHash } from 'node:crypto';
import { decodeResized, type DecodeLimits } from './image.js';

/*
 * Augmented copies of training photos, computed by workers like any image and cached like any
 * vector. A copy is named by an image id `<sha256>_<spec>_<variant>`: its pixels depend only on
 * the photo, the spec and the variant number (the random draws are seeded by all three), so a
 * rerun computes the same copies and finds them cached, and more copies add only new variants.
 */

/** What an augmentation may do, as retrain.py's flags did (--flip_left_right, --random_crop, --random_scale, --random_brightness). */
export const AUGMENTATIONS = ['brightness', 'crop', 'flip', 'scale'] as const;
export type Augmentation = (typeof AUGMENTATIONS)[number];

/** Copies per training image at most. */
export const MAX_AUGMENT_COPIES = 32;

/** How far each augmentation goes: crop keeps 80-100 % of each side, scale zooms 1-1.25x on the centre, brightness 0.8-1.2x. */
const CROP_MIN = 0.8;
const SCALE_MAX = 1.25;
const BRIGHTNESS = 0.2;

const ID = /^([0-9a-f]{64})(?:_([a-z]+(?:-[a-z]+)*)_(\d{1,2}))?$/;

/**
 * The canonical spec of a comma- or dash-separated list (sorted, deduplicated, dash-joined):
 * `flip,crop` and `crop,flip` are the same spec, `crop-flip`.
 * @throws RangeError naming an unknown augmentation.
 */
export function parseAugmentSpec(text: string): string {
  const names = [...new Set(text.split(/[,\s-]+/).filter(Boolean))];
  if (names.length === 0) throw new RangeError('no augmentation named: use flip, crop, scale and/or brightness');
  for (const n of names)
    if (!(AUGMENTATIONS as readonly string[]).includes(n)) throw new RangeError(`unknown augmentation ${JSON.stringify(n)}: use ${AUGMENTATIONS.join(', ')}`);
  return names.sort().join('-');
}

/** The image id of variant `variant` of a photo under a spec. */
export function augmentedId(sha256: string, spec: string, variant: number): string {
  return `${sha256}_${spec}_${variant}`;
}

/** An image id: a photo's SHA-256, or an augmented copy of it. Undefined for anything else. */
export function parseImageId(id: string): { sha256: string; augment?: { spec: string; variant: number } } | undefined {
  const m = ID.exec(id);
  if (!m) return undefined;
  if (!m[2]) return { sha256: m[1] };
  return { sha256: m[1], augment: { spec: m[2], variant: Number(m[3]) } };
}

export function isAugmentedId(id: string): boolean {
  return id.length > 64 && id[64] === '_';
}

/** The draws of one copy: where it crops, whether it mirrors, how bright. Pure: same inputs, same draws. */
export function augmentParams(sha256: string, spec: string, variant: number): { keep: number; x: number; y: number; flip: boolean; brightness: number } {
  const h = createHash('sha256').update(`${sha256}|${spec}|${variant}`).digest();
  const u = (i: number) => h.readUInt32BE(i * 4) / 2 ** 32;
  const on = new Set(spec.split('-'));
  const crop = on.has('crop') ? CROP_MIN + (1 - CROP_MIN) * u(0) : 1;
  const scale = on.has('scale') ? 1 + (SCALE_MAX - 1) * u(1) : 1;
  return {
    keep: crop / scale,
    // Scale alone zooms on the centre; crop places its window anywhere.
    x: on.has('crop') ? u(2) : 0.5,
    y: on.has('crop') ? u(3) : 0.5,
    flip: on.has('flip') && u(4) < 0.5,
    brightness: on.has('brightness') ? 1 - BRIGHTNESS + 2 * BRIGHTNESS * u(5) : 1,
  };
}

/**
 * Decodes a photo as one augmented copy at size x size (as retrain.py: resize so the kept window
 * is size pixels wide, cut the window, mirror, scale the brightness). Orientation, colour space
 * and limits as decodeImage.
 * @throws ImageError as decodeImage, RangeError for a bad spec.
 */
export async function decodeAugmented(
  bytes: Uint8Array,
  size: number,
  sha256: string,
  spec: string,
  variant: number,
  limits: DecodeLimits = {},
): Promise<Uint8Array> {
  parseAugmentSpec(spec);
  const p = augmentParams(sha256, spec, variant);
  const full = Math.max(size, Math.round(size / p.keep));
  const left = Math.min(full - size, Math.floor((full - size) * p.x));
  const top = Math.min(full - size, Math.floor((full - size) * p.y));
  const px = await decodeResized(bytes, size, limits, { full, left, top, flip: p.flip });
  if (p.brightness !== 1) for (let i = 0; i < px.length; i++) px[i] = Math.min(255, Math.round(px[i] * p.brightness));
  return px;
}
