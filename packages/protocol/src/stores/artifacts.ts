import { handles, type Bus } from '../bus.js';
import { codecs, type AuditFold, type Checkpoint, type PredictionPage, type Suggestions, type SweepHead } from '../messages.js';
import { BUCKETS, artifactNames } from '../names.js';
import { readObject, readObjectInfo } from './direct-reads.js';

/*
 * The artifacts store (graft-artifacts): per job, its training checkpoint, the finished heads of its
 * sweep, the folds of its audit, and the files of its exported model folder, under `<job>/`. This module is its only reader
 * and writer. Reads are direct gets (no consumer: the command line reads finished models and may create none).
 */

type CheckpointFields = Parameters<typeof codecs.checkpoint.encode>[0];
type SweepHeadFields = Parameters<typeof codecs.sweepHead.encode>[0];

/**
 * A job's training checkpoint, or undefined when it has none.
 * @throws ProtocolError when the stored bytes are not a Checkpoint.
 */
export async function readCheckpoint(bus: Bus, jobId: string): Promise<Checkpoint | undefined> {
  const bytes = await readObject(bus, BUCKETS.artifacts, artifactNames.checkpoint(jobId));
  return bytes ? codecs.checkpoint.decode(bytes, `checkpoint of ${jobId}`) : undefined;
}

/** Replaces a job's checkpoint. */
export async function writeCheckpoint(bus: Bus, jobId: string, checkpoint: CheckpointFields): Promise<void> {
  await handles(bus).artifacts.putBlob({ name: artifactNames.checkpoint(jobId) }, codecs.checkpoint.encode({ ...checkpoint, jobId }));
}

/** Deletes a job's checkpoint (none is fine). */
export async function deleteCheckpoint(bus: Bus, jobId: string): Promise<void> {
  await handles(bus).artifacts.delete(artifactNames.checkpoint(jobId));
}

/**
 * One finished head of a job's sweep, or undefined when it is not stored.
 * @throws ProtocolError when the stored bytes are not a SweepHead.
 */
export async function readSweepHead(bus: Bus, jobId: string, configId: string): Promise<SweepHead | undefined> {
  const bytes = await readObject(bus, BUCKETS.artifacts, artifactNames.sweepHead(jobId, configId));
  return bytes ? codecs.sweepHead.decode(bytes, `sweep head ${configId} of ${jobId}`) : undefined;
}

/** Stores one finished head of a job's sweep (a coordinator that takes over trains only the rest). */
export async function writeSweepHead(bus: Bus, jobId: string, head: SweepHeadFields): Promise<void> {
  await handles(bus).artifacts.putBlob({ name: artifactNames.sweepHead(jobId, head.configId ?? '') }, codecs.sweepHead.encode(head));
}

/** Whether one head of a job's sweep is stored. */
export async function hasSweepHead(bus: Bus, jobId: string, configId: string): Promise<boolean> {
  const info = await readObjectInfo(bus, BUCKETS.artifacts, artifactNames.sweepHead(jobId, configId));
  return Boolean(info && !info.deleted);
}

/** Deletes these heads of a job's sweep (once its model is stored). @returns those that could not be deleted. */
export async function deleteSweepHeads(bus: Bus, jobId: string, configIds: readonly string[]): Promise<string[]> {
  const left: string[] = [];
  for (const id of configIds)
    await handles(bus)
      .artifacts.delete(artifactNames.sweepHead(jobId, id))
      .catch(() => left.push(id));
  return left;
}

/**
 * One fold of a job's audit, or undefined when it is not stored.
 * @throws ProtocolError when the stored bytes are not an AuditFold.
 */
export async function readAuditFold(bus: Bus, jobId: string, fold: number): Promise<AuditFold | undefined> {
  const bytes = await readObject(bus, BUCKETS.artifacts, artifactNames.auditFold(jobId, fold));
  return bytes ? codecs.auditFold.decode(bytes, `audit fold ${fold} of ${jobId}`) : undefined;
}

/** Stores one fold of a job's audit (a coordinator that takes over trains only the rest). */
export async function writeAuditFold(
  bus: Bus,
  jobId: string,
  fold: { fold: number; folds: number; photos: number; probabilities: Float32Array },
): Promise<void> {
  await handles(bus).artifacts.putBlob(
    { name: artifactNames.auditFold(jobId, fold.fold) },
    codecs.auditFold.encode({ ...fold, probabilities: Array.from(fold.probabilities) }),
  );
}

/** Deletes the folds of a job's audit (once audit.json is stored). @returns how many could not be deleted. */
export async function deleteAuditFolds(bus: Bus, jobId: string, folds: number): Promise<number> {
  let left = 0;
  for (let k = 0; k < folds; k++)
    await handles(bus)
      .artifacts.delete(artifactNames.auditFold(jobId, k))
      .catch(() => left++);
  return left;
}

/** Stores the files of a job's model folder (model.json, weights.bin, graft.json, report.json). */
export async function writeModelFiles(bus: Bus, jobId: string, files: Readonly<Record<string, Uint8Array>>): Promise<void> {
  for (const [name, bytes] of Object.entries(files)) await handles(bus).artifacts.putBlob({ name: artifactNames.modelFile(jobId, name) }, bytes);
}

/** One file of a job's model folder, or undefined when it is not stored. */
export async function readModelFile(bus: Bus, jobId: string, name: string): Promise<Uint8Array | undefined> {
  return readObject(bus, BUCKETS.artifacts, artifactNames.modelFile(jobId, name));
}

/** One page of a prediction job's answers, or undefined when it is not stored (yet). @throws ProtocolError for bytes that are not one. */
export async function readPredictionPage(bus: Bus, jobId: string, page: number): Promise<PredictionPage | undefined> {
  const bytes = await readObject(bus, BUCKETS.artifacts, artifactNames.predictionPage(jobId, page));
  return bytes ? codecs.predictionPage.decode(bytes, `prediction page ${page} of ${jobId}`) : undefined;
}

/** Stores one page of a prediction job's answers (a coordinator that takes over answers only the rest). */
export async function writePredictionPage(bus: Bus, page: Parameters<typeof codecs.predictionPage.encode>[0]): Promise<void> {
  await handles(bus).artifacts.putBlob({ name: artifactNames.predictionPage(page.jobId ?? '', page.page ?? 0) }, codecs.predictionPage.encode(page));
}

/** A prediction job's photos worth labelling next, or undefined when not stored (yet). */
export async function readSuggestions(bus: Bus, jobId: string): Promise<Suggestions | undefined> {
  const bytes = await readObject(bus, BUCKETS.artifacts, artifactNames.suggestions(jobId));
  return bytes ? codecs.suggestions.decode(bytes, `suggestions of ${jobId}`) : undefined;
}

export async function writeSuggestions(bus: Bus, s: Parameters<typeof codecs.suggestions.encode>[0]): Promise<void> {
  await handles(bus).artifacts.putBlob({ name: artifactNames.suggestions(s.jobId ?? '') }, codecs.suggestions.encode(s));
}
