import { headers } from '@nats-io/transport-node';
import { handles, type Bus } from '../bus.js';
import { deadLetterSubject } from '../names.js';

/*
 * The dead-letter streams (GRAFT_DEADLETTERS and its kin, one per kind, bounded): messages refused
 * as malformed or untrustworthy. This module is their only writer.
 */

/**
 * Keeps a refused message (malformed, or not what its task asked for) in the bounded
 * dead-letter stream, with why and where it came from, so it can be inspected and is never
 * redelivered. Best effort: a message that cannot be kept is still refused.
 */
export async function deadLetter(bus: Bus, kind: 'manifest' | 'result' | 'task', data: Uint8Array, from: string, reason: string): Promise<boolean> {
  const h = headers();
  h.set('Graft-Subject', from);
  h.set('Graft-Reason', reason.replace(/[\r\n]+/g, ' ').slice(0, 1000));
  // @returns false when it could not be kept: the message is refused all the same.
  return handles(bus)
    .js.publish(deadLetterSubject(kind), data, { headers: h })
    .then(
      () => true,
      () => false,
    );
}
