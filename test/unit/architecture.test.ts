import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

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
    for (const pkg of ['protocol', 'vision', 'head', 'web', 'extractor', 'coordinator', 'cli']) assert.ok(SOURCES.some((f) => rel(f).startsWith(`packages/${pkg}/src/`)), pkg);
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
    const offenders = SOURCES.filter((f) => !inProtocol(f) && specifiers(f).some((s) => /^@nats-io\/(kv|obj|jetstream|transport-node|nats-core)$/.test(s))).map(rel);
    assert.deepEqual(offenders, []);
  });

  it('touches a bucket, stream or the connection only inside protocol', () => {
    const handle = /\bbus\.(artifacts|models|vectors|jobs|leases|claims|js|jsm|nc)\b/;
    const offenders = SOURCES.filter((f) => !inProtocol(f) && handle.test(text.get(f)!)).map(rel);
    assert.deepEqual(offenders, []);
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
      const users = SOURCES.filter((f) => new RegExp(`\\bbus\\.${bucket}\\b`).test(text.get(f)!)).map(rel);
      assert.deepEqual(users, [owner], `the ${bucket} store`);
    }
    // The image store is a stream of graft's own layout: its name is used by its module, the topology and the broker's numbers alone.
    const images = SOURCES.filter((f) => /\bSTREAMS\.images\b/.test(text.get(f)!)).map(rel).sort();
    assert.deepEqual(images, ['packages/protocol/src/broker-stats.ts', 'packages/protocol/src/bus.ts', 'packages/protocol/src/stores/images.ts']);
  });

  it('keeps the README ownership table true: every file it names exists', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('### Who owns what'));
    assert.ok(section.length > 100, 'the README has a "Who owns what" table');
    const named = [...section.slice(0, section.indexOf('\n## ')).matchAll(/`(packages\/[^`]+\.ts)`/g)].map((m) => m[1]);
    assert.ok(named.length >= 15, `the table names ${named.length} files`);
    for (const f of named) assert.ok(existsSync(join(ROOT, f)), `${f} (named in the README) exists`);
  });

  it('documents every GRAFT_* variable the command line reads, in the README\'s table', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const table = readme.slice(readme.indexOf('### Environment variables'), readme.indexOf('\n## Tests'));
    const read = new Set(SOURCES.filter((f) => rel(f).startsWith('packages/cli/')).flatMap((f) => [...text.get(f)!.matchAll(/\bGRAFT_[A-Z_]+\b/g)].map((m) => m[0])));
    assert.ok(read.size >= 10, `the CLI reads ${read.size} variables`);
    for (const v of read) assert.ok(table.includes(`\`${v}\``), `${v} is read by the CLI and listed under "Environment variables"`);
  });

  it('keeps files small: none over 400 lines', () => {
    const big = SOURCES.filter((f) => !rel(f).includes('/gen/')).map((f) => [rel(f), text.get(f)!.split('\n').length] as const).filter(([, n]) => n > 400);
    assert.deepEqual(big, []);
  });

  it('keeps functions short: none over 80 lines but a template that reads top to bottom', () => {
    // renderReport is one HTML template, read as the page it makes.
    const allowed = new Set(['packages/web/src/report.ts renderReport']);
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
