import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createProgress } from '@graft/cli';

function fakeStream(isTTY: boolean) {
  let out = '';
  return { stream: { isTTY, write: (s: string) => ((out += s), true) } as unknown as NodeJS.WriteStream, text: () => out };
}

describe('cli - progress', () => {
  it('draws a bar redrawn in place on a terminal', () => {
    const f = fakeStream(true);
    const p = createProgress('uploading', f.stream);
    for (let i = 1; i <= 50; i++) p.update(i, 50);
    p.done('uploaded 50 images');
    assert.match(f.text(), /\ruploading \[#+-*\] 25\/50/);
    assert.match(f.text(), /\ruploading \[#{30}\] 50\/50/);
    assert.ok(f.text().endsWith('\nuploaded 50 images\n'));
  });

  it('writes a plain line per 10% when not a terminal', () => {
    const f = fakeStream(false);
    const p = createProgress('extracting', f.stream);
    for (let i = 1; i <= 200; i++) p.update(i, 200);
    p.done();
    const lines = f.text().trim().split('\n');
    assert.ok(!f.text().includes('\r'));
    assert.equal(lines[0], 'extracting: 1/200');
    assert.equal(lines.at(-1), 'extracting: 200/200');
    assert.ok(lines.length >= 10 && lines.length <= 12, lines.join('|'));
    const g = fakeStream(false);
    const q = createProgress('training', g.stream);
    for (let i = 1; i <= 7; i++) q.update(i, 100);
    q.done();
    assert.deepEqual(g.text().trim().split('\n'), ['training: 1/100', 'training: 7/100'], 'a run that stops early still ends on its last line');
  });
});
