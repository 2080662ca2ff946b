#!/usr/bin/env node
// npm run pack: one tarball that `npm install -g graft-VERSION.tgz` turns into a working `graft`.
// The workspaces are private (they are graft's rooms, not separate products), so the tarball bundles
// their built code (dist/, generated protobuf code, the embedded model, the demo's photos, the web
// assets) and lists the third-party packages they use as its own dependencies, fetched at install.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..');
const OUT = resolve(process.argv[2] ?? ROOT);
mkdirSync(OUT, { recursive: true });
const json = (p) => JSON.parse(readFileSync(p, 'utf8'));
const root = json(join(ROOT, 'package.json'));
const workspaces = root.workspaces.map((w) => ({ dir: join(ROOT, w), pkg: json(join(ROOT, w, 'package.json')) }));
const ours = new Set(workspaces.map((w) => w.pkg.name));

// What a workspace ships: its built and data folders, never sources, maps or build state.
const SHIPPED = ['dist', 'gen', 'models', 'assets', 'samples', 'bin', 'package.json', 'README.md'];
const shipped = (src) => !/\.(ts\.map|js\.map|tsbuildinfo)$/.test(src) && !(src.endsWith('.ts') && !src.endsWith('.d.ts'));

if (!existsSync(join(ROOT, 'packages', 'cli', 'dist', 'main.js'))) {
  console.error('pack: packages are not built: run npm run build first');
  process.exit(1);
}

const stage = join(mkdtempSync(join(tmpdir(), 'graft-pack-')), 'graft');
const dependencies = {};
for (const { dir, pkg } of workspaces) {
  const to = join(stage, 'node_modules', pkg.name);
  for (const entry of readdirSync(dir).filter((e) => SHIPPED.includes(e))) cpSync(join(dir, entry), join(to, entry), { recursive: true, filter: shipped });
  for (const [name, range] of Object.entries(pkg.dependencies ?? {})) {
    if (ours.has(name)) continue;
    if (dependencies[name] && dependencies[name] !== range)
      throw new Error(`pack: ${name} is ${dependencies[name]} in one workspace and ${range} in ${pkg.name}`);
    dependencies[name] = range;
  }
  // npm counts a bundled package's dependencies as bundled too (and would install none of them):
  // they become the tarball's own, found by node's lookup one folder up.
  const { dependencies: _, devDependencies: __, ...bare } = pkg;
  writeFileSync(join(to, 'package.json'), `${JSON.stringify(bare, null, 2)}\n`);
}
const cli = workspaces.find((w) => w.pkg.name === '@graft/cli').pkg;
const bundled = [...ours].sort();
for (const name of bundled) dependencies[name] = cli.version;
cpSync(join(ROOT, 'LICENSE'), join(stage, 'LICENSE'));
cpSync(join(ROOT, 'README.md'), join(stage, 'README.md'));
cpSync(join(ROOT, 'packages', 'cli', 'bin'), join(stage, 'bin'), { recursive: true });
// The cli's bin imports ../dist/main.js; here the cli lives in node_modules/@graft/cli.
writeFileSync(
  join(stage, 'bin', 'graft.js'),
  readFileSync(join(stage, 'bin', 'graft.js'), 'utf8').replace("await import('../dist/main.js');", "await import('@graft/cli/dist/main.js');"),
);
writeFileSync(
  join(stage, 'package.json'),
  `${JSON.stringify(
    {
      name: 'graft',
      version: cli.version,
      description: root.description,
      license: root.license,
      type: 'module',
      bin: { graft: 'bin/graft.js' },
      engines: root.engines,
      files: ['bin', 'LICENSE', 'README.md'],
      dependencies: Object.fromEntries(Object.entries(dependencies).sort(([a], [b]) => a.localeCompare(b))),
      bundleDependencies: bundled,
    },
    null,
    2,
  )}\n`,
);
const name = execFileSync('npm', ['pack', '--silent', '--pack-destination', OUT], { cwd: stage, encoding: 'utf8' }).trim().split('\n').at(-1);
rmSync(join(stage, '..'), { recursive: true, force: true });
process.stdout.write(`${join(OUT, name)}\n`);
