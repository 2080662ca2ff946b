import sharp from 'sharp';

/** Edge of a report thumbnail, pixels (shown at 96 CSS px; 2x for sharp screens). */
export const THUMBNAIL_EDGE = 192;

/**
 * A small JPEG of a photo as a data URL, for inlining in report.html (a few KB each).
 * EXIF orientation applied, centre-cropped to a square.
 * @returns undefined for bytes sharp cannot read (the report shows the image's name instead).
 */
export async function thumbnailDataUrl(bytes: Uint8Array): Promise<string | undefined> {
  try {
    const jpeg = await sharp(bytes, { limitInputPixels: 100_000_000 })
      .rotate()
      .resize(THUMBNAIL_EDGE, THUMBNAIL_EDGE, { fit: 'cover' })
      .toColourspace('srgb')
      .jpeg({ quality: 70, mozjpeg: true })
      .toBuffer();
    return `data:image/jpeg;base64,${jpeg.toString('base64')}`;
  } catch {
    return undefined; // an unreadable photo has no thumbnail; the report counts it as missing
  }
}
