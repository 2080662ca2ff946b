import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { seededRandom } from '@graft/head';

/** The classes of the generated sample set: shapes a pretrained CNN tells apart easily. */
export const SAMPLE_CLASSES = ['circle', 'square', 'triangle', 'stripes'] as const;
export type SampleClass = (typeof SAMPLE_CLASSES)[number];

/** Each class has its own hue range as well as its shape, so a small set is learnable. */
const HUES: Record<SampleClass, number> = { circle: 0, square: 120, triangle: 230, stripes: 50 };

/** One sample photo as SVG: a random shape of a class on a random light background. */
function svg(cls: SampleClass, r: () => number, size: number): string {
  const hsl = (h: number, l: number) => `hsl(${Math.floor(h) % 360},${50 + Math.floor(r() * 40)}%,${l}%)`;
  const bg = hsl(r() * 360, 80 + Math.floor(r() * 12));
  const fg = hsl(HUES[cls] + r() * 40 - 20 + 360, 30 + Math.floor(r() * 20));
  const s = size * (0.3 + r() * 0.35);
  const cx = size * (0.3 + r() * 0.4);
  const cy = size * (0.3 + r() * 0.4);
  let shape: string;
  if (cls === 'circle') shape = `<circle cx="${cx}" cy="${cy}" r="${s / 2}" fill="${fg}"/>`;
  else if (cls === 'square')
    shape = `<rect x="${cx - s / 2}" y="${cy - s / 2}" width="${s}" height="${s}" fill="${fg}" transform="rotate(${Math.floor(r() * 30 - 15)} ${cx} ${cy})"/>`;
  else if (cls === 'triangle') shape = `<polygon points="${cx},${cy - s / 2} ${cx - s / 2},${cy + s / 2} ${cx + s / 2},${cy + s / 2}" fill="${fg}"/>`;
  else {
    const w = 6 + Math.floor(r() * 10);
    const lines: string[] = [];
    for (let x = -size; x < 2 * size; x += 2 * w) lines.push(`<rect x="${x}" y="${-size}" width="${w}" height="${3 * size}" fill="${fg}"/>`);
    shape = `<g transform="rotate(${Math.floor(r() * 180)} ${size / 2} ${size / 2})">${lines.join('')}</g>`;
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size}"><rect width="100%" height="100%" fill="${bg}"/>${shape}</svg>`;
}

/** Renders one sample image as JPEG bytes. */
export async function sampleImage(cls: SampleClass, seed: number, size = 160): Promise<Buffer> {
  return sharp(Buffer.from(svg(cls, seededRandom(seed), size)))
    .jpeg({ quality: 90 })
    .toBuffer();
}

/**
 * Writes a class-per-folder sample set: `perClass` JPEGs of `size` x `size` in each of `classes`.
 * Deterministic for a seed. @returns the folder.
 */
export async function generateSampleSet(
  dir: string,
  perClass: number,
  seed = 1,
  classes: readonly SampleClass[] = SAMPLE_CLASSES,
  size = 160,
): Promise<string> {
  for (const [ci, cls] of classes.entries()) {
    await mkdir(join(dir, cls), { recursive: true });
    for (let i = 0; i < perClass; i++) {
      await writeFile(join(dir, cls, `${cls}_${String(i).padStart(3, '0')}.jpg`), await sampleImage(cls, seed * 100_003 + ci * 10_007 + i, size));
    }
  }
  return dir;
}
