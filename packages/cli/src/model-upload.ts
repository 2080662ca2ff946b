import { isImageStored, putImage, type Bus } from '@graft/protocol';
import { localModelUpload, redactUrl, type BackboneFields, type ModelUpload } from '@graft/vision';

/*
 * A local model named by --backbone (a TF.js folder, a .pb, an archive#member), handed to the
 * cluster: checked here, uploaded as content-addressed blobs to the image store (the one store the
 * command line already writes), and named in the manifest by SHA-256. The coordinator reads it from
 * there, checked, with no access to this machine's files and no --allow-model-files.
 */

/** Whether a backbone request names a model on this machine. */
function isLocalModel(ref: BackboneFields): boolean {
  return ref.id === 'custom' && Boolean(ref.url?.startsWith('file:'));
}

/**
 * Reads and checks the local model a request names (none for a catalogue name or a URL): what a real
 * publish uploads, and what --dry-run checks.
 */
export async function prepareLocalModel(ref: BackboneFields): Promise<{ upload?: ModelUpload; problem?: string }> {
  if (!isLocalModel(ref)) return {};
  try {
    return { upload: await localModelUpload(ref.url!) };
  } catch (err) {
    return { problem: `--backbone: ${(err as Error).message}` };
  }
}

/** Uploads a prepared model (blobs already in the store are not sent again) and returns the request naming it. */
export async function uploadModel(bus: Bus, ref: BackboneFields, up: ModelUpload, show: boolean): Promise<BackboneFields> {
  let sent = 0;
  for (const b of up.blobs) {
    if (await isImageStored(bus, b.sha256, b.bytes.byteLength)) continue;
    await putImage(bus, { name: b.sha256, description: `model ${b.what} of ${redactUrl(ref.url!)}` }, b.bytes);
    sent += b.bytes.byteLength;
  }
  const total = up.blobs.reduce((n, b) => n + b.bytes.byteLength, 0);
  if (show)
    process.stderr.write(
      `model ${ref.url}: ${sent ? 'uploaded to the cluster' : 'already in the cluster'} (${(total / 1e6).toFixed(1)} MB, SHA-256 ${up.sha256.slice(0, 12)})\n`,
    );
  return { ...ref, uploadSha256: up.sha256 };
}
