import { MODEL_FILES, writeModelFolder } from '@graft/head';
import { artifactNames, type Bus } from '@graft/protocol';

/** Writes a finished job's model folder to dir. @throws Error when the job has no stored model. */
export async function exportModel(bus: Bus, jobId: string, dir: string): Promise<void> {
  const files: Record<string, Uint8Array> = {};
  for (const name of MODEL_FILES) {
    const bytes = await bus.artifacts.getBlob(artifactNames.modelFile(jobId, name));
    if (!bytes) throw new Error(`job ${jobId} has no stored ${name}: is it finished? (graft status ${jobId})`);
    files[name] = bytes;
  }
  await writeModelFolder(dir, files);
}
