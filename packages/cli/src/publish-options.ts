import type { TrainingOptions, PredictOptions } from '@graft/protocol';
import type { BackboneFields, BackboneOverrides } from '@graft/vision';
import type { DownloadOptions } from './downloads.js';
import type { FixesOption } from './fixes.js';
import type { ImageListOptions } from './image-list.js';
import type { ScanResult } from './scan.js';

/* What graft publish (and train, predict) take, and what a publish did. */

export interface PublishOptions {
  name?: string;
  /** Publish a new job even when an unfinished one of the same photos and options exists (by default that one is followed). */
  newJob?: boolean;
  /** auto (default), a catalogue id, or a model path/URL. */
  backbone?: string;
  overrides?: BackboneOverrides;
  /** Only what the user gave: absent options take the coordinator's defaults. */
  training?: TrainingOptions;
  vectorDType?: 'float32' | 'float16';
  /** TSV of `path<TAB>train|validation|test` (paths relative to the folder) fixing splits. */
  splitsFile?: string;
  /** Print progress (default true). */
  progress?: boolean;
  /** How to read a list file (CSV, TSV, JSONL) given instead of a folder. */
  list?: ImageListOptions;
  /** How a list's URLs are downloaded. */
  download?: DownloadOptions;
  /** Store local photos larger than this (longer side, pixels) as re-encoded copies of that size. */
  maxSide?: number;
  /** Where those copies are kept between runs (default: a temporary folder). */
  shrinkCacheDir?: string;
  /** An audit's fixes list applied before publishing (--exclude or --relabel). */
  fixes?: FixesOption;
  /**
   * graft predict: the photos are unlabelled (a folder of photos at any depth, or a list without
   * labels), the classes are the model's, the backbone its own (`backboneRef`), and the job applies
   * the uploaded head instead of training one.
   */
  predict?: { options: PredictOptions; classes: string[]; backboneRef: BackboneFields };
  /** A labelled list added to the folder's photos (graft train DIR --add to-label.csv). */
  add?: string;
}

export interface Published {
  jobId: string;
  scan: ScanResult;
  uploaded: number;
  alreadyStored: number;
  /** Images stored as a shrunk copy (--max-side). */
  shrunk: number;
  /** The job was not published: an unfinished job of the same photos and options existed, and is followed. */
  followed?: boolean;
}
