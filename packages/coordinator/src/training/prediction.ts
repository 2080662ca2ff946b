import {
  PREDICTION_PAGE,
  readCachedVectors,
  readImage,
  readPredictionPage,
  vectorOf,
  writePredictionPage,
  writeSuggestions,
  type CachedVector,
  type Prediction,
} from '@graft/protocol';
import { MAX_HEAD_FLOATS, Stopped, UncertainPool, applyDenseHead, decodeDenseHead, kCenterGreedy, poolSize, topClasses } from '@graft/head';
import type { DenseSpec } from '@graft/vision';
import type { JobWorkInput } from './job-work.js';

/*
 * A prediction job's work once its vectors are in (graft predict): the publisher's head applied to
 * every photo's vector, the answers stored a page of PREDICTION_PAGE entries at a time in the
 * manifest's order (the command line streams them as they appear; a coordinator taking over answers
 * only the pages not stored), and, when asked, the photos most worth labelling next. The head runs
 * here, where the vectors are read anyway: a photo's answer costs about dim x classes multiply-adds,
 * less than reading its vector, and no worker needs the head.
 */

export interface PredictJobInput extends JobWorkInput {
  /** A page stored (or found stored), of `pages`. */
  onPage?: (done: number, pages: number) => void | Promise<void>;
  /** A page answered here (not found stored): its photos with an answer and without one. */
  onAnswered?: (answered: number, failed: number) => void;
}

export interface PredictJobResult {
  answered: number;
  /** Photos with no answer: their extraction failed. */
  failed: number;
  suggested: number;
}

/** A candidate for labelling: what the suggestions file needs of it. */
interface Candidate {
  index: number;
  margin: number;
  guess: number;
  probability: number;
}

/** Why a photo has no answer when the cache holds no failure for it either. */
const NO_VECTOR = 'no vector: its extraction failed (graft status lists why)';

/** Answers every photo of a prediction job and stores the answers. @throws Stopped when asked to stop (the stored pages resume it). */
export async function predictJob(input: PredictJobInput): Promise<PredictJobResult> {
  const { bus, manifest, images, backbone, persist } = input;
  const o = manifest.predict!;
  const layers = await loadHead(input);
  const jobId = manifest.jobId;
  const pages = Math.ceil(images.length / PREDICTION_PAGE);
  const pool = o.suggest ? new UncertainPool<Candidate>(poolSize(o.suggest)) : undefined;
  let answered = 0;
  let failed = 0;
  for (let page = 0; page < pages; page++) {
    if (input.shouldStop()) throw new Stopped(`predicting after ${page} of ${pages} pages`);
    let rows = (await persist('reading the stored answers', () => readPredictionPage(bus, jobId, page)))?.rows;
    const restored = rows !== undefined;
    if (!rows) {
      rows = await answerPage(input, layers, page);
      const stored = rows;
      await persist('storing answers', () => writePredictionPage(bus, { jobId, page, rows: stored }));
    }
    let pageFailed = 0;
    for (const r of rows) {
      if (r.error) pageFailed++;
      else pool?.add({ index: Number(r.index), margin: r.margin, guess: r.classes[0], probability: r.probabilities[0] });
    }
    failed += pageFailed;
    answered += rows.length - pageFailed;
    if (!restored) input.onAnswered?.(rows.length - pageFailed, pageFailed);
    await input.onPage?.(page + 1, pages);
  }
  const suggested = pool ? await suggest(input, pool) : 0;
  input.log.info({ answered, failed, suggested, pages }, 'predictions stored');
  return { answered, failed, suggested };
}

/** The publisher's head from the image store, checked against the job (its dimension and classes) before anything runs. */
async function loadHead(input: PredictJobInput): Promise<DenseSpec[]> {
  const sha = input.manifest.predict!.headSha256!;
  const r = await input.persist('reading the head', () => readImage(input.bus, sha, MAX_HEAD_FLOATS * 4 + 1024 * 1024));
  if (!r.ok) throw new Error(`the head ${sha.slice(0, 12)}: ${r.message}`);
  try {
    return decodeDenseHead(r.bytes, input.backbone.dim, input.manifest.classes.length);
  } catch (err) {
    throw new Error(`the head ${sha.slice(0, 12)} is refused: ${(err as Error).message}`, { cause: err });
  }
}

/** One page's answers, in the manifest's order. */
async function answerPage(input: PredictJobInput, layers: DenseSpec[], page: number): Promise<Prediction[]> {
  const { images } = input;
  const topK = input.manifest.predict!.topK!;
  const first = page * PREDICTION_PAGE;
  const last = Math.min(images.length, first + PREDICTION_PAGE);
  const cached = await readVectors(
    input,
    Array.from({ length: last - first }, (_, k) => images.sha(first + k)),
  );
  const rows: Prediction[] = [];
  for (let i = first; i < last; i++) {
    const entry = cached.get(images.sha(i));
    const vector = vectorOf(entry);
    const row: Prediction = { index: i, path: images.path(i), classes: [], probabilities: [], margin: 0, error: '' };
    if (!vector) row.error = entry?.errorMessage || NO_VECTOR;
    else Object.assign(row, topClasses(applyDenseHead(layers, vector), topK));
    rows.push(row);
  }
  return rows;
}

async function readVectors(input: PredictJobInput, shas: string[]): Promise<Map<string, CachedVector | undefined>> {
  const out = new Map<string, CachedVector | undefined>();
  const unique = [...new Set(shas)];
  await input.persist('reading the vector cache', () => readCachedVectors(input.bus, input.backbone.fingerprint, unique, (id, e) => out.set(id, e)));
  return out;
}

/** The N photos to label next: the pool's most uncertain, spread by k-center greedy on their vectors. Stored; @returns how many. */
async function suggest(input: PredictJobInput, pool: UncertainPool<Candidate>): Promise<number> {
  const { images } = input;
  const candidates = pool.sorted();
  const cached = await readVectors(
    input,
    candidates.map((c) => images.sha(c.index)),
  );
  // Each candidate's vector decoded once; one the cache lost since its answer is left out.
  const usable = candidates.map((c) => ({ c, v: vectorOf(cached.get(images.sha(c.index))) })).filter((x) => x.v);
  const vectors = usable.map((x) => x.v!);
  const chosen = kCenterGreedy(vectors, input.manifest.predict!.suggest!).map((k) => usable[k].c);
  const rows = chosen.map((c) => ({ index: c.index, path: images.path(c.index), guess: c.guess, probability: c.probability, margin: c.margin }));
  await input.persist('storing the suggestions', () => writeSuggestions(input.bus, { jobId: input.manifest.jobId, rows, candidates: pool.seen }));
  return rows.length;
}
