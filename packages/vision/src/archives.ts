import { gunzipSync } from 'node:zlib';
import { BackboneError } from './errors.js';

/*
 * Reading one member out of a model archive (.zip or .tgz), as TensorFlow's own models were
 * published. Only the first matching member is decompressed, its bytes are counted against the
 * model cap as they come out (the sizes an archive declares can lie), and a member that inflates
 * far more than any model does is refused as a bomb.
 */

/** Decompressed over compressed bytes past which a member is refused (models compress about 1.1x). */
const MAX_RATIO = 200;
/** Members smaller than this are never judged by their ratio. */
const RATIO_FLOOR = 1024 * 1024;

/** One file out of a .zip or .tgz, by name (or by its last path part). */
export async function extractMember(archive: Uint8Array, member: string, origin: string, max: number): Promise<Uint8Array> {
  const matches = (name: string) => name === member || name.replace(/^\.\//, '') === member || name.endsWith(`/${member}`);
  // Archive readers load only when an archive is read (most processes never do).
  if (archive[0] === 0x50 && archive[1] === 0x4b) return zipMember(archive, matches, member, origin, max);
  if (archive[0] === 0x1f && archive[1] === 0x8b) {
    // The whole tar counts: members before ours are decompressed too.
    let tar: Buffer;
    try {
      tar = gunzipSync(archive, { maxOutputLength: max + 1024 * 1024 });
    } catch (err) {
      throw new BackboneError(`${origin} decompresses to over the ${max}-byte limit`, { cause: err });
    }
    if (tar.length > RATIO_FLOOR && tar.length / archive.length > MAX_RATIO)
      throw new BackboneError(`${origin} inflates ${Math.round(tar.length / archive.length)}x: refused as a decompression bomb`);
    const { extract } = await import('tar-stream');
    const ex = extract();
    const done = new Promise<Uint8Array | undefined>((resolve, reject) => {
      let found: Uint8Array | undefined;
      ex.on('entry', (header, stream, next) => {
        const parts: Buffer[] = [];
        const want = !found && header.type === 'file' && matches(header.name);
        stream.on('data', (c: unknown) => want && parts.push(c as Buffer));
        stream.on('end', () => {
          if (want) found = Buffer.concat(parts);
          next();
        });
        stream.resume();
      });
      ex.on('finish', () => resolve(found));
      ex.on('error', reject);
    });
    ex.end(tar);
    const found = await done;
    if (!found) throw new BackboneError(`${origin} has no ${member}`);
    return found;
  }
  throw new BackboneError(`${origin} is neither a .zip nor a .tgz`);
}

/** The first member of a zip that matches, inflated chunk by chunk under the cap and the ratio. */
async function zipMember(archive: Uint8Array, matches: (name: string) => boolean, member: string, origin: string, max: number): Promise<Uint8Array> {
  const { Unzip, UnzipInflate } = await import('fflate');
  const parts: Uint8Array[] = [];
  let size = 0;
  let problem: string | undefined;
  let taken = false;
  let done = false;
  const unzip = new Unzip((file) => {
    if (taken || !matches(file.name)) return; // never inflated
    taken = true;
    file.ondata = (err, data, final) => {
      if (problem) return;
      if (err) problem = `${origin}: ${member} is damaged (${err.message})`;
      else {
        size += data.length;
        if (size > max) problem = `${origin}: ${member} is over the ${max}-byte limit`;
        else if (size > RATIO_FLOOR && (file.size ?? 0) > 0 && size / (file.size ?? 1) > MAX_RATIO)
          problem = `${origin}: ${member} inflates over ${MAX_RATIO}x: refused as a decompression bomb`;
        else parts.push(data);
      }
      if (problem) file.terminate();
      if (final) done = true;
    };
    file.start();
  });
  unzip.register(UnzipInflate);
  try {
    unzip.push(archive, true);
  } catch (err) {
    if (!problem) throw new BackboneError(`${origin} is not a readable zip (${(err as Error).message})`, { cause: err });
  }
  if (problem) throw new BackboneError(problem);
  if (!taken || !done) throw new BackboneError(`${origin} has no ${member}`);
  return Buffer.concat(parts);
}
