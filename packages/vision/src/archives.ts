import { gunzipSync } from 'node:zlib';
import { BackboneError } from './errors.js';

/* Reading one member out of a model archive (.zip or .tgz), as TensorFlow's own models were published. */

/** One file out of a .zip or .tgz, by name (or by its last path part). */
export async function extractMember(archive: Uint8Array, member: string, origin: string, max: number): Promise<Uint8Array> {
  const matches = (name: string) => name === member || name.replace(/^\.\//, '') === member || name.endsWith(`/${member}`);
  // Archive readers load only when an archive is read (most processes never do).
  if (archive[0] === 0x50 && archive[1] === 0x4b) {
    const { unzipSync } = await import('fflate');
    const files = unzipSync(archive, { filter: (f) => matches(f.name) && f.originalSize <= max });
    const found = Object.values(files)[0];
    if (!found) throw new BackboneError(`${origin} has no ${member} (or it is over the ${max}-byte limit)`);
    return found;
  }
  if (archive[0] === 0x1f && archive[1] === 0x8b) {
    const tar = gunzipSync(archive, { maxOutputLength: max + 64 * 1024 * 1024 });
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

