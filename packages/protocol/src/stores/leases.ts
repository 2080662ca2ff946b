import { randomBytes } from 'node:crypto';
import { handles, type Bus } from '../bus.js';
import { isRevisionConflict } from '../errors.js';
import { codecs, type CoordinatorLease } from '../messages.js';
import { LEASES } from '../names.js';

/*
 * The leases bucket (graft-leases), which only coordinators may read: which coordinator leads, as a
 * CoordinatorLease under `coordinator`, written with revision checks; and the coordinators' task key
 * under `task-key`. This module is its only reader and writer; the coordinator's Leadership decides
 * when to write the lease.
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
  const e = await handles(bus).leases.get(LEASES.coordinator);
  if (!e || e.operation !== 'PUT') return undefined;
  return { lease: codecs.coordinatorLease.decode(e.value, 'coordinator lease'), revision: e.revision };
}

function leaseValue(holder: string, ttlMs: number): Uint8Array {
  return codecs.coordinatorLease.encode({ holder, ttlMs, renewedAtMs: Date.now() });
}

/** Takes the free lease. @returns its revision. @throws a revision conflict when somebody holds it. */
export async function createLease(bus: Bus, holder: string, ttlMs: number): Promise<number> {
  return handles(bus).leases.create(LEASES.coordinator, leaseValue(holder, ttlMs));
}

/**
 * Writes the lease over the revision named (a renewal, or a take-over of a lapsed lease).
 * @returns the new revision. @throws a revision conflict when somebody wrote it since.
 */
export async function writeLease(bus: Bus, holder: string, ttlMs: number, revision: number): Promise<number> {
  return handles(bus).leases.update(LEASES.coordinator, leaseValue(holder, ttlMs), revision);
}

/** Frees the lease if it is still the revision named. */
export async function deleteLease(bus: Bus, revision: number): Promise<void> {
  await handles(bus).leases.delete(LEASES.coordinator, { previousSeq: revision });
}

/**
 * The coordinators' secret for task tokens: made (32 random bytes) by the first coordinator that
 * asks, read by every later one, so tokens of tasks queued before a restart or a takeover still
 * verify. Workers and the CLI cannot read it.
 */
export async function taskKey(bus: Bus): Promise<Uint8Array> {
  for (;;) {
    const e = await handles(bus).leases.get(LEASES.taskKey);
    if (e && e.operation === 'PUT' && e.value.length === 32) return e.value;
    try {
      const key = randomBytes(32);
      await handles(bus).leases.create(LEASES.taskKey, key);
      return key;
    } catch (err) {
      if (!isRevisionConflict(err)) throw err; // another coordinator made it first: read it
    }
  }
}
