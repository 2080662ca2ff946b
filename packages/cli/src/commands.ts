import type { Command } from './commands/command.js';
import { coordinator, init, up, worker } from './commands/cluster-commands.js';
import { exportCmd, publish, status, sweep } from './commands/job-commands.js';
import { classify, inspect } from './commands/model-commands.js';
import { importCmd } from './commands/import-command.js';
import { audit } from './commands/audit-command.js';
import { report, serve } from './commands/show-commands.js';
import { demo, train } from './commands/train-commands.js';
import { predict } from './commands/predict-command.js';

export type { Command } from './commands/command.js';

/** The command table: every graft command by name, in the order help lists them. */
export const COMMANDS: Record<string, Command> = {
  train,
  predict,
  sweep,
  audit,
  publish,
  status,
  export: exportCmd,
  report,
  serve,
  classify,
  inspect,
  import: importCmd,
  up,
  worker,
  coordinator,
  init,
  demo,
};
