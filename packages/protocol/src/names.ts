/**
 * Every NATS name graft uses: subjects, streams, consumers and buckets.
 * Nothing else in graft spells one out; change a name here and only here.
 */

/** Where clients look for NATS when given no URL (and no $GRAFT_NATS_URL). */
export const DEFAULT_NATS_URL = 'nats://127.0.0.1:4222';

/** Subject prefix shared by all graft traffic (permissions are written against `graft.>`). */
export const SUBJECT_ROOT = 'graft';

export const STREAMS = {
  /** One message per job: the dataset manifest (`graft.manifests.<job>`). */
  manifests: 'GRAFT_MANIFESTS',
  /** Pages of the image lists of manifests too big for one message (`graft.manifest-pages.<job>.<page>`). */
  manifestPages: 'GRAFT_MANIFEST_PAGES',
  /** Extraction tasks, work-queue retention (`graft.tasks.<fingerprint>`). */
  tasks: 'GRAFT_TASKS',
  /** Vector batches from workers to the coordinator (`graft.results.<job>`). */
  results: 'GRAFT_RESULTS',
  /** Job history for watchers (`graft.events.<job>`). */
  events: 'GRAFT_EVENTS',
  /**
   * Messages refused as malformed or untrustworthy, kept for inspection, bounded, one stream per kind
   * (each with its own limits: a flood of one kind evicts none of the others): manifests
   * (`graft.deadletters.manifest`), results (`.result`), tasks a worker could not read (`.task`).
   */
  deadLetters: 'GRAFT_DEADLETTERS',
  resultDeadLetters: 'GRAFT_DEADLETTERS_RESULTS',
  taskDeadLetters: 'GRAFT_DEADLETTERS_TASKS',
  /** Photos at a backbone's input size, one per photo, size and rule, oldest evicted (`graft.prepared.<rule>.<size>.<sha256>`). */
  prepared: 'GRAFT_PREPARED',
  /**
   * Photo bytes (and the blobs of uploaded models) by hex SHA-256: chunks on `graft.images.<sha256>.<i>`,
   * then the record on `graft.images.<sha256>.r`; the first message of each subject is the one kept.
   */
  images: 'GRAFT_IMAGES',
} as const;

export const SUBJECTS = {
  manifests: `${SUBJECT_ROOT}.manifests.*`,
  manifestPages: `${SUBJECT_ROOT}.manifest-pages.*.*`,
  tasks: `${SUBJECT_ROOT}.tasks.*`,
  results: `${SUBJECT_ROOT}.results.*`,
  events: `${SUBJECT_ROOT}.events.*`,
  deadLetters: `${SUBJECT_ROOT}.deadletters.manifest`,
  resultDeadLetters: `${SUBJECT_ROOT}.deadletters.result`,
  taskDeadLetters: `${SUBJECT_ROOT}.deadletters.task`,
  prepared: `${SUBJECT_ROOT}.prepared.*.*.*`,
  images: `${SUBJECT_ROOT}.images.*.*`,
} as const;

export const BUCKETS = {
  /** Object store of trained heads, reports and checkpoints, under `<job>/...`. */
  artifacts: 'graft-artifacts',
  /** KV of bottleneck vectors (and per-image errors) under `<fingerprint>.<sha256>`. */
  vectors: 'graft-vectors',
  /** KV of job records (JobStatus) under the job id. */
  jobs: 'graft-jobs',
  /** KV of leases (CoordinatorLease): who leads. */
  leases: 'graft-leases',
  /**
   * KV of task claims (the id of the worker embedding a task) under the task id, expiring on their
   * own: a task redelivered while its first worker still works on it is not embedded twice.
   */
  claims: 'graft-claims',
  /** Object store of resolved backbones, under `<fingerprint>/`: the only models workers load. */
  models: 'graft-models',
} as const;

/** The stream JetStream keeps each bucket in (its documented layout: KV_<bucket>, OBJ_<bucket>). */
export const BUCKET_STREAMS = {
  artifacts: `OBJ_${BUCKETS.artifacts}`,
  models: `OBJ_${BUCKETS.models}`,
  vectors: `KV_${BUCKETS.vectors}`,
  jobs: `KV_${BUCKETS.jobs}`,
  leases: `KV_${BUCKETS.leases}`,
  claims: `KV_${BUCKETS.claims}`,
} as const;

/** Keys of the leases bucket. */
export const LEASES = {
  /** The one active coordinator. */
  coordinator: 'coordinator',
  /** The coordinators' key for task tokens (workers cannot read this bucket). */
  taskKey: 'task-key',
} as const;

export const CONSUMERS = {
  manifests: 'coordinator-manifests',
  results: 'coordinator-results',
} as const;

/** Advisories JetStream sends when a task reached its consumer's MaxDeliver (core NATS, not stored). */
export const MAX_DELIVERIES_ADVISORY = `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${STREAMS.tasks}.*`;

/** Subject a job's manifest is published on. */
export function manifestSubject(jobId: string): string {
  return `${SUBJECT_ROOT}.manifests.${token(jobId, 'job id')}`;
}

/** Subject of one page of a large manifest's image list. */
export function manifestPageSubject(jobId: string, page: number): string {
  return `${SUBJECT_ROOT}.manifest-pages.${token(jobId, 'job id')}.${Math.trunc(page)}`;
}

/** Subject of extraction tasks for one backbone. */
export function taskSubject(fingerprint: string): string {
  return `${SUBJECT_ROOT}.tasks.${token(fingerprint, 'fingerprint')}`;
}

/** Subject a job's vector batches are published on. */
export function resultSubject(jobId: string): string {
  return `${SUBJECT_ROOT}.results.${token(jobId, 'job id')}`;
}

/** Subject of a job's events. */
export function eventSubject(jobId: string): string {
  return `${SUBJECT_ROOT}.events.${token(jobId, 'job id')}`;
}

/** Subject a refused message of one kind (manifest, result, task) is kept on. */
export function deadLetterSubject(kind: 'manifest' | 'result' | 'task'): string {
  return `${SUBJECT_ROOT}.deadletters.${kind}`;
}

/** The stream that keeps refused messages of one kind. */
export function deadLetterStream(kind: 'manifest' | 'result' | 'task'): string {
  return { manifest: STREAMS.deadLetters, result: STREAMS.resultDeadLetters, task: STREAMS.taskDeadLetters }[kind];
}

/** Subjects of one photo in the image store: its chunks (`i` from 0) and its record. */
export const imageSubjects = {
  chunk: (sha256: string, i: number) => `${SUBJECT_ROOT}.images.${token(sha256, 'sha256')}.${Math.trunc(i)}`,
  record: (sha256: string) => `${SUBJECT_ROOT}.images.${token(sha256, 'sha256')}.r`,
  /** Every subject of the photo (what the coordinator purges to repair it). */
  all: (sha256: string) => `${SUBJECT_ROOT}.images.${token(sha256, 'sha256')}.*`,
} as const;

/** Subject of a photo prepared at one input size by one decode-and-resize rule. */
export function preparedSubject(rule: string, size: number, sha256: string): string {
  if (!Number.isSafeInteger(size) || size < 1) throw new TypeError(`invalid input size ${size}`);
  return `${SUBJECT_ROOT}.prepared.${token(rule, 'resize rule')}.${size}.${token(sha256, 'sha256')}`;
}

/** Durable pull consumer shared by every extractor serving one backbone. */
export function extractorConsumer(fingerprint: string): string {
  return `extract-${token(fingerprint, 'fingerprint')}`;
}

/** The fingerprint an extractor consumer serves, or undefined for other consumers. */
export function fingerprintOfConsumer(name: string): string | undefined {
  return name.startsWith('extract-') ? name.slice('extract-'.length) : undefined;
}

/** Vector cache key: the backbone and the image content, nothing else. */
export function vectorKey(fingerprint: string, sha256: string): string {
  return `${vectorKeyPrefix(fingerprint)}${token(sha256, 'sha256')}`;
}

/** What every vector cache key of one backbone starts with. */
export function vectorKeyPrefix(fingerprint: string): string {
  return `${token(fingerprint, 'fingerprint')}.`;
}

/**
 * The stream and subject that hold one key of a KV bucket (JetStream's layout): lets a client ask
 * whether a key exists from stream info, without the right to read its value.
 */
export function kvKeyLocation(bucket: string, key: string): { stream: string; subject: string } {
  return { stream: `KV_${bucket}`, subject: `$KV.${bucket}.${key}` };
}

/** Object names of one resolved backbone in the models store: model.json (naming weights.bin) and the weights. */
export const modelObjects = {
  json: (fingerprint: string) => `${token(fingerprint, 'fingerprint')}/model.json`,
  weights: (fingerprint: string) => `${token(fingerprint, 'fingerprint')}/weights.bin`,
} as const;

/** Artifact object names for one job. */
export const artifactNames = {
  checkpoint: (jobId: string) => `${jobId}/checkpoint.pb`,
  /** A finished head of a job's sweep (SweepHead), by its config id. */
  sweepHead: (jobId: string, configId: string) => `${jobId}/sweep/${token(configId, 'sweep config id')}.pb`,
  /** Where a job's sweep heads are: list and delete by this prefix. */
  sweepPrefix: (jobId: string) => `${jobId}/sweep/`,
  /** One fold of a job's audit (AuditFold): out-of-sample probabilities of that fold's photos. */
  auditFold: (jobId: string, fold: number) => `${jobId}/audit/fold-${fold}.pb`,
  /** A file of the exported model folder (model.json, weights.bin, graft.json, report.json). */
  modelFile: (jobId: string, file: string) => `${jobId}/${file}`,
  /** One page of a prediction job's answers (PredictionPage), PREDICTION_PAGE manifest entries each. */
  predictionPage: (jobId: string, page: number) => `${jobId}/predictions/${page}.pb`,
  /** A prediction job's photos worth labelling next (Suggestions). */
  suggestions: (jobId: string) => `${jobId}/suggestions.pb`,
} as const;

/** Manifest entries per page of a prediction job's answers: a page is about 100 KB at top-5. */
export const PREDICTION_PAGE = 1000;

const TOKEN = /^[A-Za-z0-9_-]+$/;

/** A subject token or key part must not contain dots, wildcards or spaces. */
function token(value: string, what: string): string {
  if (!TOKEN.test(value)) throw new TypeError(`invalid ${what} ${JSON.stringify(value)}: use letters, digits, '-' and '_'`);
  return value;
}

/** Whether a string can be used as a job id (and so as a subject token). */
export function isValidJobId(value: string): boolean {
  return TOKEN.test(value) && value.length <= 64;
}
