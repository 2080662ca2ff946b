#!/usr/bin/env node
// Runs the compiled tests with node's test runner: unit tests, then integration tests
// (real nats-server), one file at a time so servers and worker processes do not compete.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const suites = process.argv.slice(2).length ? process.argv.slice(2) : ['unit', 'integration'];
const files = suites.flatMap((s) => {
  // A suite's files, its folders' too (integration/hostile/: hostile input, by scenario).
  const dir = join(root, 'test', 'dist', s);
  return readdirSync(dir, { recursive: true })
    .filter((f) => f.endsWith('.test.js'))
    .sort()
    .map((f) => join(dir, f));
});
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', '--test-reporter=spec', ...files], { stdio: 'inherit', cwd: root });
process.exit(r.status ?? 1);
