import './protobuf-numbers.js';
import { graft } from '../gen/graft.js';
import { ProtocolError } from './errors.js';

/** The generated protobuf classes (see proto/graft.proto). */
export const pb = graft.v1;

export const Split = pb.Split;
export type Split = graft.v1.Split;
export const VectorDType = pb.VectorDType;
export type VectorDType = graft.v1.VectorDType;
export const ErrorCode = pb.ErrorCode;
export type ErrorCode = graft.v1.ErrorCode;
export const JobState = pb.JobState;
export type JobState = graft.v1.JobState;

export type BackboneRef = graft.v1.BackboneRef.$Properties;
/** A decoded BackboneRef: every field present (proto3 defaults). */
export type BackboneRefMessage = graft.v1.BackboneRef;
export type TrainingOptions = graft.v1.TrainingOptions.$Properties;
export type ImageEntry = graft.v1.ImageEntry.$Properties;
export type SkippedFile = graft.v1.SkippedFile.$Properties;
/** A decoded manifest: repeated messages come back as full messages (every field present). */
export type DatasetManifest = Omit<graft.v1.DatasetManifest, 'images' | 'skipped'> & {
  images: Full<graft.v1.ImageEntry.$Properties>[];
  skipped: Full<graft.v1.SkippedFile.$Properties>[];
};
export type ExtractionTask = graft.v1.ExtractionTask;
export type ImageVector = graft.v1.ImageVector.$Properties;
export type VectorBatch = Omit<graft.v1.VectorBatch, 'vectors'> & { vectors: Full<graft.v1.ImageVector.$Properties>[] };
export type StageTimings = graft.v1.StageTimings.$Properties;
export type JobCounts = graft.v1.JobCounts.$Properties;
export type EpochMetrics = graft.v1.EpochMetrics.$Properties;
export type ImageFailure = graft.v1.ImageFailure.$Properties;
export type EvaluationSummary = graft.v1.EvaluationSummary.$Properties;
/** A message's plain fields, all present: what decoding yields for nested messages. */
export type Full<T> = { [K in Exclude<keyof T, '$unknowns'>]-?: NonNullable<T[K]> };
export type JobStatus = Omit<graft.v1.JobStatus, 'failures'> & { failures: Full<graft.v1.ImageFailure.$Properties>[] };
export type JobEvent = graft.v1.JobEvent;
export type CachedVector = graft.v1.CachedVector;
export type Checkpoint = Omit<graft.v1.Checkpoint, 'history'> & { history: Full<graft.v1.EpochMetrics.$Properties>[] };
export type NamedTensor = graft.v1.NamedTensor.$Properties;
export type SweepHead = Omit<graft.v1.SweepHead, 'history' | 'weights' | 'mean' | 'std'> & {
  history: Full<graft.v1.EpochMetrics.$Properties>[];
  weights: Full<graft.v1.NamedTensor.$Properties>[];
  mean: Full<graft.v1.NamedTensor.$Properties>;
  std: Full<graft.v1.NamedTensor.$Properties>;
};
export type CoordinatorLease = graft.v1.CoordinatorLease;
export type AuditFold = graft.v1.AuditFold;
export type ManifestPage = Omit<graft.v1.ManifestPage, 'images'> & { images: Full<graft.v1.ImageEntry.$Properties>[] };
export type PredictOptions = graft.v1.PredictOptions.$Properties;
export type DenseLayer = graft.v1.DenseLayer.$Properties;
export type PredictHead = Omit<graft.v1.PredictHead, 'layers'> & { layers: Full<graft.v1.DenseLayer.$Properties>[] };
export type Prediction = Full<graft.v1.Prediction.$Properties>;
export type PredictionPage = Omit<graft.v1.PredictionPage, 'rows'> & { rows: Prediction[] };
export type Suggestion = Full<graft.v1.Suggestion.$Properties>;
export type Suggestions = Omit<graft.v1.Suggestions, 'rows'> & { rows: Suggestion[] };

/** Encodes and decodes one message type, wrapping failures in ProtocolError naming the type. */
export class MessageCodec<P, T extends P> {
  constructor(
    readonly typeName: string,
    private readonly type: { create(p?: P): unknown; encode(m: P): { finish(): Uint8Array }; decode(r: Uint8Array): unknown },
  ) {}

  create(p: P): T {
    return this.type.create(p) as T;
  }

  encode(m: P): Uint8Array {
    return this.type.encode(m).finish();
  }

  /** @throws ProtocolError when the bytes are not a valid message of this type. */
  decode(bytes: Uint8Array, where = 'message'): T {
    try {
      return this.type.decode(bytes) as T;
    } catch (err) {
      throw new ProtocolError(`${where} is not a valid ${this.typeName}: ${(err as Error).message}`, { cause: err });
    }
  }
}

function codec<P, T extends P>(
  name: string,
  type: { create(p?: P): unknown; encode(m: P): { finish(): Uint8Array }; decode(r: Uint8Array): unknown },
): MessageCodec<P, T> {
  return new MessageCodec<P, T>(name, type);
}

/** One codec per message that travels on NATS or sits in a bucket. */
export const codecs = {
  manifest: codec<graft.v1.DatasetManifest.$Properties, DatasetManifest>('DatasetManifest', pb.DatasetManifest),
  task: codec<graft.v1.ExtractionTask.$Properties, ExtractionTask>('ExtractionTask', pb.ExtractionTask),
  vectorBatch: codec<graft.v1.VectorBatch.$Properties, VectorBatch>('VectorBatch', pb.VectorBatch),
  jobStatus: codec<graft.v1.JobStatus.$Properties, JobStatus>('JobStatus', pb.JobStatus),
  jobEvent: codec<graft.v1.JobEvent.$Properties, JobEvent>('JobEvent', pb.JobEvent),
  cachedVector: codec<graft.v1.CachedVector.$Properties, CachedVector>('CachedVector', pb.CachedVector),
  checkpoint: codec<graft.v1.Checkpoint.$Properties, Checkpoint>('Checkpoint', pb.Checkpoint),
  sweepHead: codec<graft.v1.SweepHead.$Properties, SweepHead>('SweepHead', pb.SweepHead),
  auditFold: codec<graft.v1.AuditFold.$Properties, AuditFold>('AuditFold', pb.AuditFold),
  coordinatorLease: codec<graft.v1.CoordinatorLease.$Properties, CoordinatorLease>('CoordinatorLease', pb.CoordinatorLease),
  manifestPage: codec<graft.v1.ManifestPage.$Properties, ManifestPage>('ManifestPage', pb.ManifestPage),
  preparedInput: codec<graft.v1.PreparedInput.$Properties, graft.v1.PreparedInput>('PreparedInput', pb.PreparedInput),
  storedImage: codec<graft.v1.StoredImage.$Properties, graft.v1.StoredImage>('StoredImage', pb.StoredImage),
  predictHead: codec<graft.v1.PredictHead.$Properties, PredictHead>('PredictHead', pb.PredictHead),
  predictionPage: codec<graft.v1.PredictionPage.$Properties, PredictionPage>('PredictionPage', pb.PredictionPage),
  suggestions: codec<graft.v1.Suggestions.$Properties, Suggestions>('Suggestions', pb.Suggestions),
} as const;

/** Readable names for enum values, for logs and the CLI. */
export function jobStateName(state: JobState | null | undefined): string {
  return (pb.JobState[state ?? 0] ?? 'JOB_STATE_UNSPECIFIED').replace('JOB_STATE_', '').toLowerCase();
}

export function errorCodeName(code: ErrorCode | null | undefined): string {
  return (pb.ErrorCode[code ?? 0] ?? 'ERROR_CODE_NONE').replace('ERROR_CODE_', '').toLowerCase();
}

export function splitName(split: Split | null | undefined): string {
  return (pb.Split[split ?? 0] ?? 'SPLIT_UNSPECIFIED').replace('SPLIT_', '').toLowerCase();
}

/** Whether a job state is final. */
export function isTerminal(state: JobState | null | undefined): boolean {
  return state === pb.JobState.JOB_STATE_DONE || state === pb.JobState.JOB_STATE_FAILED;
}
