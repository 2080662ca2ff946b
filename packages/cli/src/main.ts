#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { COMMANDS } from './commands.js';
import { UsageError } from './args.js';
import { describeError } from './errors.js';
import { ClusterRunning } from './data-lock.js';
import { closest } from './did-you-mean.js';

/** This graft's version (the cli package's). */
const VERSION = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const HELP = `graft: distributed transfer learning of image classifiers over NATS JetStream

usage: graft COMMAND [options]   (graft COMMAND --help for each)

${Object.entries(COMMANDS)
  .map(([name, c]) => `  ${name.padEnd(12)} ${c.summary}`)
  .join('\n')}

Start here: graft train PHOTOS_DIR   (one folder per class)
`;

/** An unknown command: one line, the closest command's name when it looks like a typo. @returns 2 */
function unknownCommand(name: string): number {
  const guess = closest(name, Object.keys(COMMANDS));
  process.stderr.write(`graft: unknown command ${JSON.stringify(name)} (${guess ? `did you mean graft ${guess}? ` : ''}see graft --help)\n`);
  return 2;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === '--version' || name === '-V' || name === 'version') {
    process.stdout.write(`graft ${VERSION}\n`);
    return 0;
  }
  // graft help CMD: that command's help.
  if (name === 'help' && rest[0]) {
    if (!COMMANDS[rest[0]]) return unknownCommand(rest[0]);
    process.stdout.write(`${COMMANDS[rest[0]].usage}\n`);
    return 0;
  }
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(HELP);
    return name ? 0 : 2;
  }
  const cmd = COMMANDS[name];
  if (!cmd) return unknownCommand(name);
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${cmd.usage}\n`);
    return 0;
  }
  try {
    return await cmd.run(rest);
  } catch (err) {
    if (err instanceof ClusterRunning) {
      const url = err.held.url;
      process.stderr.write(`graft ${name}: ${err.message}: use it (graft publish DIR --nats ${url || 'URL'}), stop it first, or give another --data\n`);
      return 1;
    }
    if (err instanceof UsageError) {
      // One line and where to read more: the whole help would scroll the reason away.
      process.stderr.write(`graft ${name}: ${err.message}\nsee graft ${name} --help\n`);
      return 2;
    }
    // No broker: say how to get one, not only that the connection was refused.
    const hint =
      (err as Error).name === 'BusError' && /cannot connect/.test((err as Error).message)
        ? ' (no NATS server there: start a cluster with graft up, or pass --nats URL)'
        : '';
    process.stderr.write(`graft ${name}: ${describeError(err)}${hint}\n`);
    if (process.env.GRAFT_DEBUG) process.stderr.write(`${(err as Error).stack}\n`);
    return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`graft: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  },
);
