import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { doc, section } from '../helpers/docs.js';

/*
 * The shape the code keeps: no import circles, the NATS store modules imported only by protocol,
 * every store touched only by the module that owns it (the README's table), small files,
 * environment variables read only by the CLI. Read from the sources with the TypeScript compiler.
 */

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const PACKAGES = join(ROOT, 'packages');

function sourcesOf(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sourcesOf(p));
    else if (p.endsWith('.ts') && !p.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

const SOURCES = readdirSync(PACKAGES).flatMap((pkg) => (existsSync(join(PACKAGES, pkg, 'src')) ? sourcesOf(join(PACKAGES, pkg, 'src')) : []));
const rel = (p: string) => relative(ROOT, p);
const text = new Map(SOURCES.map((f) => [f, readFileSync(f, 'utf8')]));

/** Every module specifier a file imports or re-exports (type-only ones too: a circle of types is still a circle). */
function specifiers(file: string): string[] {
  return ts.preProcessFile(text.get(file)!, true, true).importedFiles.map((f) => f.fileName);
}

/** The package sources an import resolves to (workspace packages map to their src/index.ts). */
function resolveImport(from: string, spec: string): string | undefined {
  if (spec.startsWith('.')) {
    const p = resolve(dirname(from), spec.replace(/\.js$/, '.ts'));
    return text.has(p) ? p : undefined;
  }
  const m = /^@graft\/([a-z-]+)$/.exec(spec);
  if (m) return join(PACKAGES, m[1], 'src', 'index.ts');
  return undefined;
}

/** One circle of imports, if the graph has any (depth-first search for a back edge). */
function findCircle(): string[] | undefined {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (f: string): string[] | undefined => {
    state.set(f, 'open');
    stack.push(f);
    for (const spec of specifiers(f)) {
      const to = resolveImport(f, spec);
      if (!to || !text.has(to)) continue;
      if (state.get(to) === 'open') return [...stack.slice(stack.indexOf(to)), to].map(rel);
      if (!state.has(to)) {
        const c = visit(to);
        if (c) return c;
      }
    }
    stack.pop();
    state.set(f, 'done');
    return undefined;
  };
  for (const f of SOURCES) {
    if (state.has(f)) continue;
    const c = visit(f);
    if (c) return c;
  }
  return undefined;
}

const inProtocol = (f: string) => rel(f).startsWith('packages/protocol/');

describe('architecture', () => {
  it('reads every package source (the checks below see the whole tree)', () => {
    assert.ok(SOURCES.length > 60, `found only ${SOURCES.length} sources`);
    for (const pkg of ['protocol', 'vision', 'head', 'web', 'extractor', 'coordinator', 'cli'])
      assert.ok(
        SOURCES.some((f) => rel(f).startsWith(`packages/${pkg}/src/`)),
        pkg,
      );
  });

  it('has no import circle, within or across packages', () => {
    const circle = findCircle();
    assert.equal(circle, undefined, `import circle: ${circle?.join(' -> ')}`);
  });

  it('finds a circle when there is one (the check itself works)', () => {
    const a = join(PACKAGES, 'protocol', 'src', '__a.ts');
    const b = join(PACKAGES, 'protocol', 'src', '__b.ts');
    text.set(a, "import { b } from './__b.js';\nexport const a = 1;\n");
    text.set(b, "import type { a } from './__a.js';\nexport const b = 2;\n");
    SOURCES.unshift(a, b);
    try {
      assert.deepEqual(findCircle(), ['packages/protocol/src/__a.ts', 'packages/protocol/src/__b.ts', 'packages/protocol/src/__a.ts']);
    } finally {
      SOURCES.splice(0, 2);
      text.delete(a);
      text.delete(b);
    }
  });

  it('imports the NATS client store modules only in protocol', () => {
    const offenders = SOURCES.filter((f) => !inProtocol(f) && specifiers(f).some((s) => /^@nats-io\/(kv|obj|jetstream|transport-node|nats-core)$/.test(s))).map(
      rel,
    );
    assert.deepEqual(offenders, []);
  });

  it("keeps a bus's handles inside protocol: its Bus type has none, and no package imports the tests' view of it", () => {
    // The Bus type graft's packages hold has no connection, stream or bucket on it (the compiler
    // keeps them off); only @graft/protocol/testing, for tests and the bench, opens them.
    const offenders = SOURCES.filter((f) => !inProtocol(f) && specifiers(f).some((s) => s === '@graft/protocol/testing')).map(rel);
    assert.deepEqual(offenders, []);
    const bus = text.get(SOURCES.find((f) => rel(f) === 'packages/protocol/src/bus.ts')!)!;
    const publicBus = bus.slice(bus.indexOf('export interface Bus {'), bus.indexOf('}', bus.indexOf('export interface Bus {')));
    assert.doesNotMatch(publicBus, /\b(nc|js|jsm|vectors|jobs|leases|claims|artifacts|models):/, 'the Bus type other packages hold has no handles');
  });

  it('gives each store one owner: its bucket handle is used in that module alone', () => {
    const owners: Record<string, string> = {
      artifacts: 'packages/protocol/src/stores/artifacts.ts',
      models: 'packages/protocol/src/stores/models.ts',
      vectors: 'packages/protocol/src/stores/vectors.ts',
      jobs: 'packages/protocol/src/stores/jobs.ts',
      leases: 'packages/protocol/src/stores/leases.ts',
      claims: 'packages/protocol/src/stores/claims.ts',
    };
    for (const [bucket, owner] of Object.entries(owners)) {
      const users = SOURCES.filter((f) => new RegExp(`\\bhandles\\(bus\\)\\.${bucket}\\b`).test(text.get(f)!)).map(rel);
      assert.deepEqual(users, [owner], `the ${bucket} store`);
    }
    // The image store is a stream of graft's own layout: its name is used by its module, the topology and the broker's numbers alone.
    const images = SOURCES.filter((f) => /\bSTREAMS\.images\b/.test(text.get(f)!))
      .map(rel)
      .sort();
    assert.deepEqual(images, [
      'packages/protocol/src/broker-stats.ts',
      'packages/protocol/src/stores/images.ts',
      'packages/protocol/src/stream-configs.ts',
      'packages/protocol/src/topology.ts',
    ]);
  });

  it('keeps the ownership table true: every file it names exists, and every store module is in it', () => {
    const table = section(doc('architecture.md'), '## Who owns what');
    const named = [...table.matchAll(/`(packages\/[^`]+\.ts)`/g)].map((m) => m[1]);
    assert.ok(named.length >= 15, `the table names ${named.length} files`);
    for (const f of named) assert.ok(existsSync(join(ROOT, f)), `${f} (named in docs/architecture.md) exists`);
    const stores = SOURCES.map(rel).filter((f) => /^packages\/protocol\/src\/(stores|policy)\/[^/]+\.ts$/.test(f) && !/(consumers|direct-reads)\.ts$/.test(f));
    for (const f of stores) assert.ok(named.includes(f), `${f} (a store or policy) has its row under "Who owns what"`);
  });

  it('each package README names every source file of its package', () => {
    const missing: string[] = [];
    for (const pkg of readdirSync(join(ROOT, 'packages'))) {
      const readme = readFileSync(join(ROOT, 'packages', pkg, 'README.md'), 'utf8');
      const files = SOURCES.map(rel).filter((f) => f.startsWith(`packages/${pkg}/src/`) && !f.includes('/gen/'));
      for (const f of files) if (!new RegExp(`[\`/]${f.split('/').pop()!.replace('.', '\\.')}\``).test(readme)) missing.push(f);
    }
    assert.deepEqual(missing, [], 'files their package README does not name');
  });

  it('keeps the README a short tour: under 300 lines, each topic in docs/', () => {
    const readme = doc('README.md');
    assert.ok(readme.split('\n').length < 300, `${readme.split('\n').length} lines`);
    for (const f of readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md'))) assert.ok(readme.includes(`docs/${f}`), `the README points to docs/${f}`);
  });

  it('documents every GRAFT_* variable the command line reads, in docs/configuration.md', () => {
    const table = doc('configuration.md');
    const read = new Set(
      SOURCES.filter((f) => rel(f).startsWith('packages/cli/')).flatMap((f) => [...text.get(f)!.matchAll(/\bGRAFT_[A-Z_]+\b/g)].map((m) => m[0])),
    );
    assert.ok(read.size >= 10, `the CLI reads ${read.size} variables`);
    for (const v of read) assert.ok(table.includes(`\`${v}\``), `${v} is read by the CLI and listed under "Environment variables"`);
  });

  it('keeps unit tests pure: none starts a server or a graft process (those are integration tests)', () => {
    const unit = join(ROOT, 'test', 'unit');
    const starts = /\b(createServer|startTestNats|startLocalNats|TestCluster|spawnGraft|runGraft)\b/;
    const offenders = readdirSync(unit).filter((f) => f.endsWith('.ts') && f !== 'architecture.test.ts' && starts.test(readFileSync(join(unit, f), 'utf8')));
    assert.deepEqual(offenders, []);
  });

  it('keeps files small: none over 400 lines', () => {
    const big = SOURCES.filter((f) => !rel(f).includes('/gen/'))
      .map((f) => [rel(f), text.get(f)!.split('\n').length] as const)
      .filter(([, n]) => n > 400);
    assert.deepEqual(big, []);
  });

  it('keeps functions short: none over 80 lines but a template and two tables that read top to bottom', () => {
    // renderReport is one HTML template, read as the page it makes.
    // coordinatorMetrics and streamConfigs are tables, one definition per row.
    const allowed = new Set([
      'packages/web/src/report.ts renderReport',
      'packages/coordinator/src/metrics.ts coordinatorMetrics',
      'packages/protocol/src/stream-configs.ts streamConfigs',
    ]);
    const long: string[] = [];
    for (const f of SOURCES) {
      const src = ts.createSourceFile(f, text.get(f)!, ts.ScriptTarget.Latest, true);
      const visit = (n: ts.Node): void => {
        if ((ts.isFunctionDeclaration(n) || ts.isMethodDeclaration(n) || ts.isArrowFunction(n) || ts.isFunctionExpression(n)) && n.body) {
          const lines = src.getLineAndCharacterOfPosition(n.end).line - src.getLineAndCharacterOfPosition(n.getStart()).line + 1;
          const name = `${rel(f)} ${(n as ts.FunctionDeclaration).name?.getText() ?? '(anonymous)'}`;
          if (lines > 80 && !allowed.has(name)) long.push(`${name}: ${lines} lines`);
        }
        ts.forEachChild(n, visit);
      };
      visit(src);
    }
    assert.deepEqual(long, []);
  });

  it('reads the environment only in the CLI', () => {
    const offenders = SOURCES.filter((f) => !rel(f).startsWith('packages/cli/') && /process\.env\b/.test(text.get(f)!)).map(rel);
    assert.deepEqual(offenders, []);
  });

  it('commits no scratch scripts at the root', () => {
    const scratch = readdirSync(ROOT).filter((f) => /\.(mjs|js|ts)$/.test(f));
    assert.deepEqual(scratch, []);
  });
});
