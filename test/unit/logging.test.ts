import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import pino from 'pino';
import { REDACT_PATHS } from '@graft/cli';
import { describeBus } from '@graft/protocol/testing';

describe('logging - secrets', () => {
  it('redacts passwords, tokens and seeds at any depth graft logs them', () => {
    let out = '';
    const sink = new Writable({ write: (chunk, _enc, cb) => ((out += chunk.toString()), cb()) });
    const log = pino({ redact: { paths: REDACT_PATHS, censor: '[Redacted]' } }, sink);
    log.info(
      {
        pass: 'p1-secret',
        token: 't1-secret',
        bus: { pass: 'p2-secret', token: 't2-secret', seed: 'SUAseed-secret' },
        config: { auth: { password: 'p3-secret' } },
      },
      'config',
    );
    for (const s of ['p1-secret', 't1-secret', 'p2-secret', 't2-secret', 'SUAseed-secret', 'p3-secret']) assert.ok(!out.includes(s), `${s} leaked: ${out}`);
    assert.match(out, /\[Redacted\]/);
  });

  it('describes a bus connection without its credentials', () => {
    const d = JSON.stringify(describeBus({ servers: 'nats://h:4222', user: 'worker', pass: 'hunter2', token: 'tok' }));
    assert.ok(!d.includes('hunter2') && !d.includes('tok"'));
    assert.match(d, /token/);
  });
});
