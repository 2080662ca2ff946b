import type { Bus } from '../bus.js';
import { codecs, type CoordinatorLease } from '../messages.js';
import { LEASES } from '../names.js';

/*
 * The leases bucket (graft-leases): which coordinator leads, as a CoordinatorLease under
 * `coordinator`, written with revision checks. This module is its only reader and writer; the
 * coordinator's Leadership decides when to write.
 */

/** The lease as stored. */
export interface StoredLease {
  lease: CoordinatorLease;
  revision: number;
}

/**
 * The coordinator lease, or undefined when nobody holds it.
 * @throws ProtocolError when the stored bytes are not a lease.
 */
export async function readLease(bus: Bus): Promise<StoredLease | undefined> {
  const e = await bus.leases.get(LEASES.coordinator);
  if (!e || e.operation !== 'PUT') return undefined;
  return { lease: codecs.coordinatorLease.decode(e.value, 'coordinator lease'), revision: e.revision };
}

function leaseValue(holder: string, ttlMs: number): Uint8Array {
  return codecs.coordinatorLease.encode({ holder, ttlMs, renewedAtMs: Date.now() });
}

/** Takes the free lease. @returns its revision. @throws a revision conflict when somebody holds it. */
export async function createLease(bus: Bus, holder: string, ttlMs: number): Promise<number> {
  return bus.leases.create(LEASES.coordinator, leaseValue(holder, ttlMs));
}

/**
 * Writes the lease over the revision named (a renewal, or a take-over of a lapsed lease).
 * @returns the new revision. @throws a revision conflict when somebody wrote it since.
 */
export async function writeLease(bus: Bus, holder: string, ttlMs: number, revision: number): Promise<number> {
  return bus.leases.update(LEASES.coordinator, leaseValue(holder, ttlMs), revision);
}

/** Frees the lease if it is still the revision named. */
export async function deleteLease(bus: Bus, revision: number): Promise<void> {
  await bus.leases.delete(LEASES.coordinator, { previousSeq: revision });
}
