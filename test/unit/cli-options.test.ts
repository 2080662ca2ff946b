import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { COMMANDS } from '@graft/cli';
import { allDocs } from '../helpers/docs.js';

/*
 * Each command's option table (what parsing accepts) is the one list its help and the README are
 * checked against: an option the help does not show, a flag the help or README shows that the
 * command refuses, fails here.
 */

const flagsIn = (text: string) => new Set([...text.matchAll(/(?<![\w-])--([a-z][a-z0-9-]*)/g)].map((m) => m[1]));
const accepts = (cmd: string, flag: string) => flag === 'help' || flag in COMMANDS[cmd].options;
const names = Object.keys(COMMANDS).join('|');

/** The flags a text gives to each `graft CMD` it names: from the name to the next comment, backtick or `graft`. */
function flagsByCommand(text: string): { cmd: string; flag: string; line: string }[] {
  const found: { cmd: string; flag: string; line: string }[] = [];
  for (const line of text.split('\n')) {
    for (const m of line.matchAll(new RegExp(`\\bgraft (${names})\\b([^\`#;]*?)(?=\\bgraft |[\`#;]|$)`, 'g'))) {
      for (const flag of flagsIn(m[2])) found.push({ cmd: m[1], flag, line: line.trim() });
    }
  }
  return found;
}

describe('CLI options - help, parsing and README from one table', () => {
  it('every option a command accepts is in its help', () => {
    const hidden = Object.entries(COMMANDS).flatMap(([name, c]) =>
      Object.keys(c.options)
        .filter((o) => !flagsIn(c.usage).has(o))
        .map((o) => `graft ${name} --${o}`),
    );
    assert.deepEqual(hidden, [], 'options accepted but not in their help');
  });

  it('every flag a help shows is accepted by that command, or by the other graft command it names', () => {
    const refused = Object.entries(COMMANDS).flatMap(([name, c]) => {
      const elsewhere = new Set(
        flagsByCommand(c.usage)
          .filter((f) => f.cmd !== name && accepts(f.cmd, f.flag))
          .map((f) => f.flag),
      );
      return [...flagsIn(c.usage)].filter((f) => !accepts(name, f) && !elsewhere.has(f)).map((f) => `graft ${name} --${f}`);
    });
    assert.deepEqual(refused, [], 'flags in a help that the command refuses');
  });

  it('every flag the README and docs/ give a graft command is one that command accepts', () => {
    const readme = allDocs();
    const uses = flagsByCommand(readme);
    assert.ok(uses.length > 50, `the README shows graft commands with flags (${uses.length} found)`);
    const refused = uses.filter((u) => !accepts(u.cmd, u.flag)).map((u) => `graft ${u.cmd} --${u.flag} (${u.line})`);
    assert.deepEqual(refused, [], 'README flags refused by their command');
  });

  it('the check itself finds a refused flag and a hidden option', () => {
    assert.deepEqual(
      flagsByCommand('graft train photos --nope   # then graft status --json').map((f) => `${f.cmd} ${f.flag}`),
      ['train nope', 'status json'],
    );
    assert.equal(accepts('train', 'nope'), false);
    assert.equal(accepts('status', 'json'), true);
  });
});
