import type { Logger } from 'pino';
import type { Bus } from '@graft/protocol';
import type { ResolvedBackbone } from '@graft/vision';
import type { JobManifest, ManifestEntries } from '../tracking/manifest-entries.js';
import type { Persist } from '../outage.js';

/** What a job's work after extraction (training a head, or applying one) takes of the job and this coordinator. */
export interface JobWorkInput {
  bus: Bus;
  manifest: JobManifest;
  /** The manifest's entries. */
  images: ManifestEntries;
  backbone: ResolvedBackbone;
  log: Logger;
  /** Bus operations go through this: tried again through outages. */
  persist: Persist;
  /** Asked to stop (closing, or the lease lost or stale): the work throws Stopped. */
  shouldStop: () => boolean;
}
