import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFile, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { generateSampleSet, publishDataset } from '@graft/cli';
import type { AuditReport } from '@graft/head';
import { JobState, artifactNames, freePort, readJob, readManifest } from '@graft/protocol/testing';
import { TestCluster, countsOf } from '../helpers/cluster.js';
import { CLI, ROOT } from '../helpers/fixtures.js';
import { runGraft, spawnGraft, waitFor } from '../helpers/process.js';

/*
 * graft audit and train --audit on a real cluster, with real photos (the bundled clothing samples)
 * and the embedded MobileNetV2: a planted wrong label, an exact and a near copy across splits, a
 * screenshot among shoes; the fixes list republished with --exclude and --relabel at 0 backbone
 * calls; a job too small to audit; a coordinator and a CLI killed mid-audit.
 */

const SAMPLES = join(ROOT, 'packages', 'cli', 'samples', 'clothing');

/** 4 classes of real photos with the planted mistakes, and a splits file putting each copy in another split than its original. */
async function plantedSet(dir: string): Promise<{ dir: string; splits: string }> {
  const classes = ['hat', 'pants', 'shoes', 't-shirt'];
  const files: Record<string, string[]> = {};
  for (const c of classes) {
    await mkdir(join(dir, c), { recursive: true });
    files[c] = (await readdir(join(SAMPLES, c))).sort();
    for (const f of files[c].slice(0, c === 'hat' ? 15 : 20)) await copyFile(join(SAMPLES, c, f), join(dir, c, f));
  }
  // A hat filed under shoes (one the backbone sees as a hat: some of the bundled hats look like t-shirts to it).
  await copyFile(join(SAMPLES, 'hat', files.hat[16]), join(dir, 'shoes', 'wrong-label.jpg'));
  // The same bytes twice, and a resized copy re-encoded at another quality.
  await copyFile(join(SAMPLES, 'pants', files.pants[0]), join(dir, 'pants', 'exact-copy.jpg'));
  const original = join(SAMPLES, 't-shirt', files['t-shirt'][1]);
  const m = await sharp(original).metadata();
  await sharp(original)
    .resize(Math.round(m.width! * 0.8))
    .jpeg({ quality: 60 })
    .toFile(join(dir, 't-shirt', 'near-copy.jpg'));
  // Not a photo of clothing at all.
  const svg =
    '<svg xmlns="http://www.w3.org/2000/svg" width="400" height="300"><rect width="400" height="300" fill="#202830"/><rect x="20" y="20" width="360" height="30" fill="#3a7bd5"/><rect x="20" y="70" width="160" height="200" fill="#fff"/><rect x="200" y="70" width="180" height="20" fill="#888"/><rect x="200" y="100" width="140" height="20" fill="#888"/></svg>';
  await sharp(Buffer.from(svg))
    .jpeg()
    .toFile(join(dir, 'shoes', 'screenshot.jpg'));
  const splits = join(dir, '..', 'splits.tsv');
  await writeFile(
    splits,
    [`pants/${files.pants[0]}\ttrain`, 'pants/exact-copy.jpg\ttest', `t-shirt/${files['t-shirt'][1]}\ttrain`, 't-shirt/near-copy.jpg\ttest'].join('\n'),
  );
  return { dir, splits };
}

/** stdout alone, for --json. */
function stdoutOf(args: string[], env: NodeJS.ProcessEnv): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 300_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const audited = async (path: string) => JSON.parse(await readFile(path, 'utf8')) as AuditReport;

describe('graft audit: label errors, duplicates, leaks and outliers from the cached vectors', () => {
  let c: TestCluster;
  let metricsPort: number;
  let data: { dir: string; splits: string };
  let trained: AuditReport;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    metricsPort = await freePort();
    c = new TestCluster(['--metrics-port', String(metricsPort)]);
    await c.start({ workers: 1 });
    data = await plantedSet(join(c.work, 'photos', 'clothes'));
    env = { GRAFT_HOME: c.work };
  });
  after(() => c.stop());

  it('graft train --audit finds the planted mistakes and writes audit.json and the Audit section', { timeout: 300_000 }, async () => {
    const out = join(c.work, 'model');
    // Five folds: with tens of photos per class, ten fold heads are so sure of every class that the
    // confident joint counts one error, and the screenshot's lower self-confidence takes its place.
    const r = await runGraft(
      [
        'train',
        data.dir,
        '--nats',
        c.url,
        '--backbone',
        'mobilenet_v2_035',
        '--splits',
        data.splits,
        '--audit',
        '--audit-folds',
        '5',
        '--out',
        out,
        '--no-bundle',
      ],
      env,
    );
    assert.equal(r.code, 0, r.output + c.logs());
    assert.match(r.output, /audit of 79 photos in 4 classes/);
    trained = await audited(join(out, 'audit.json'));
    const wrong = trained.labelIssues.find((l) => l.path === 'shoes/wrong-label.jpg');
    assert.ok(wrong, `the hat filed under shoes is flagged: ${JSON.stringify(trained.labelIssues.map((l) => l.path))}`);
    assert.equal(wrong.suggested, 'hat');
    const group = (path: string) => trained.duplicates.find((g) => g.photos.some((p) => p.path === path));
    assert.equal(group('pants/exact-copy.jpg')?.kind, 'exact');
    assert.equal(group('pants/exact-copy.jpg')?.photos.length, 2);
    assert.equal(group('t-shirt/near-copy.jpg')?.kind, 'near');
    assert.equal(group('t-shirt/near-copy.jpg')?.photos.length, 2);
    const leaks = trained.leaks.pairs.map((p) => [p.a.path, p.b.path].sort().join(' '));
    assert.ok(leaks.some((l) => l.includes('pants/exact-copy.jpg')) && leaks.some((l) => l.includes('t-shirt/near-copy.jpg')), JSON.stringify(leaks));
    assert.equal(trained.leaks.leakedTestPhotos, 2);
    assert.ok(trained.leaks.testAccuracy && trained.leaks.testAccuracy.testPhotos > 2);
    assert.ok(
      trained.outliers.some((o) => o.path === 'shoes/screenshot.jpg'),
      `the screenshot is an outlier: ${JSON.stringify(trained.outliers.map((o) => [o.path, o.z]))}`,
    );
    const html = await readFile(join(out, 'report.html'), 'utf8');
    assert.match(html, /<section id="audit">/);
    assert.match(html, /Likely label errors: \d+/);
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    assert.match(metrics, /^graft_audits_total\{outcome="done"\} 1$/m);
    assert.match(metrics, new RegExp(`^graft_audit_findings_total\\{kind="label_issue"\\} ${trained.labelIssues.length}$`, 'm'));
    assert.match(metrics, /^graft_audit_folds_trained_total 5$/m);
  });

  let jobId: string;
  let fixes: string;

  it('graft audit JOB audits a finished job with 0 backbone calls, prints one JSON document and writes the fixes list', { timeout: 300_000 }, async () => {
    const p = await publishDataset(c.bus, data.dir, { progress: false, backbone: 'mobilenet_v2_035', splitsFile: data.splits });
    jobId = p.jobId;
    assert.equal((await c.waitForJob(jobId, 120_000)).state, JobState.JOB_STATE_DONE);
    fixes = join(c.work, 'fixes.csv');
    const r = stdoutOf(['audit', jobId, '--folds', '5', '--nats', c.url, '--json', '--write-fixes', fixes, '--out', join(c.work, 'audit-out')], env);
    assert.equal(r.code, 0, r.stderr);
    const a = JSON.parse(r.stdout) as AuditReport;
    assert.deepEqual(
      a.labelIssues.map((l) => l.path),
      trained.labelIssues.map((l) => l.path),
      'the same photos flagged as train --audit (seeded)',
    );
    const auditId = /job (\S+): auditing job/.exec(r.stderr)![1];
    assert.match(auditId, new RegExp(`^${jobId}-audit-k5-[0-9a-f]{16}$`), 'the audit id names its job, folds and content');
    const s = (await readJob(c.bus, auditId))!;
    assert.deepEqual(countsOf(s), { total: 79, cached: 79, extracted: 0, failed: 0 }, 'every vector from the cache: no backbone call');
    const csv = await readFile(fixes, 'utf8');
    assert.match(csv, /^path,given,suggested,reason\n/);
    assert.match(csv, /^shoes\/wrong-label\.jpg,shoes,hat,label issue \(p\(given\) 0\.\d+\)$/m);
    assert.match(csv, /^pants\/exact-copy\.jpg,pants,,exact duplicate of/m);
  });

  it('--exclude and --relabel republish from the fixes list with 0 backbone calls', { timeout: 300_000 }, async () => {
    const excluded = (await readFile(fixes, 'utf8')).trim().split('\n').length - 1;
    const ex = await runGraft(
      ['train', data.dir, '--nats', c.url, '--backbone', 'mobilenet_v2_035', '--exclude', fixes, '--out', join(c.work, 'ex'), '--no-bundle'],
      env,
    );
    assert.equal(ex.code, 0, ex.output);
    assert.match(ex.output, new RegExp(`--exclude ${fixes}: ${excluded} photos left out, 0 relabelled`));
    const exId = /job (j\w+): \d+ images/.exec(ex.output)![1];
    assert.deepEqual(countsOf((await readJob(c.bus, exId))!), { total: 79 - excluded, cached: 79 - excluded, extracted: 0, failed: 0 });
    const re = await runGraft(
      ['train', data.dir, '--nats', c.url, '--backbone', 'mobilenet_v2_035', '--relabel', fixes, '--out', join(c.work, 're'), '--no-bundle'],
      env,
    );
    assert.equal(re.code, 0, re.output);
    const reId = /job (j\w+): \d+ images/.exec(re.output)![1];
    const m = (await readManifest(c.bus, reId))!;
    assert.equal(m.images.find((i) => i.path === 'shoes/wrong-label.jpg')?.label, 'hat', 'relabelled to the suggestion');
    assert.equal(
      m.images.find((i) => i.path === 'pants/exact-copy.jpg'),
      undefined,
      'no suggestion: left out',
    );
    assert.equal(countsOf((await readJob(c.bus, reId))!).extracted, 0);
  });

  it('a CLI killed mid-audit: graft audit again follows the same audit job', { timeout: 300_000 }, async () => {
    const first = spawnGraft(['audit', jobId, '--folds', '4', '--nats', c.url, '--out', join(c.work, 'a4')], env);
    await waitFor(async () => /auditing job/.test(first.output()), 60_000, 'the audit job to be published');
    first.child.kill('SIGKILL');
    await first.exited;
    const again = await runGraft(['audit', jobId, '--folds', '4', '--nats', c.url, '--out', join(c.work, 'a4')], env);
    assert.equal(again.code, 0, again.output);
    assert.match(again.output, new RegExp(`job ${jobId}-audit-k4-[0-9a-f]{16}: following the audit already published for job ${jobId}`));
    assert.equal((await audited(join(c.work, 'a4', 'audit.json'))).options.folds, 4);
  });

  it('a coordinator killed mid-audit: its successor trains only the folds not yet stored', { timeout: 600_000 }, async () => {
    const folds = 10;
    const p = await publishDataset(c.bus, data.dir, {
      progress: false,
      backbone: 'mobilenet_v2_035',
      training: { epochs: 300, patience: 0, audit: true, auditFolds: folds },
    });
    const stored = async () =>
      (await Promise.all(Array.from({ length: folds }, (_, k) => c.bus.artifacts.info(artifactNames.auditFold(p.jobId, k))))).filter((x) => x && !x.deleted)
        .length;
    await waitFor(async () => (await stored()) >= 1, 300_000, 'a first audit fold to be stored');
    c.coordinator!.child.kill('SIGKILL');
    await c.coordinator!.exited;
    const before = await stored();
    assert.ok(before < folds, `killed mid-audit (${before} of ${folds} stored)`);
    const next = c.startCoordinator();
    const s = await c.waitForJob(p.jobId, 400_000);
    assert.equal(s.state, JobState.JOB_STATE_DONE, next.output());
    const log = next.output();
    const restored = Number(/"restored":(\d+)[^\n]*auditing the labelled photos/.exec(log)?.[1]);
    const trainedFolds = (log.match(/"msg":"audit fold trained and stored"/g) ?? []).length;
    assert.ok(restored >= before, `restored ${restored}, stored before the kill ${before}`);
    assert.equal(restored + trainedFolds, folds, 'no stored fold trained again');
    const bytes = await c.bus.artifacts.getBlob(artifactNames.modelFile(p.jobId, 'audit.json'));
    assert.equal((JSON.parse(Buffer.from(bytes!).toString('utf8')) as AuditReport).foldsRestored, restored);
    assert.equal(await stored(), 0, 'the folds are deleted once audit.json is stored');
  });

  it('a job too small to audit: graft audit says why in one line; train --audit finishes and warns', { timeout: 300_000 }, async () => {
    const tiny = await generateSampleSet(join(c.work, 'tiny'), 3, 5, ['circle', 'square']);
    const model = await c.tinyModel(8);
    const p = await publishDataset(c.bus, tiny, { progress: false, backbone: model, training: { epochs: 3 } });
    assert.equal((await c.waitForJob(p.jobId, 120_000)).state, JobState.JOB_STATE_DONE);
    const r = stdoutOf(['audit', p.jobId, '--nats', c.url], env);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.match(
      r.stderr.trim(),
      new RegExp(
        `^graft audit: job ${p.jobId} is too small to audit: 2 classes have fewer than 10 photos with vectors \\(circle \\(3\\), square \\(3\\)\\);[^\\n]*$`,
      ),
    );
    const q = await publishDataset(c.bus, tiny, { progress: false, backbone: model, training: { epochs: 3, audit: true } });
    const s = await c.waitForJob(q.jobId, 120_000);
    assert.equal(s.state, JobState.JOB_STATE_DONE);
    assert.match(s.warning ?? '', /audit skipped: too small to audit/);
  });
});
