import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { generateSampleSet } from '@graft/cli';
import { JobState, WORKER_STREAMS, codecs, openBus, publishManifest, readManifest, type BusHandles as Bus } from '@graft/protocol/testing';
import { TestCluster } from '../helpers/cluster.js';
import { PASSWORDS, deployedAuthorization } from '../helpers/deploy.js';
import { retrainMobileNetGraph } from '../helpers/graphdef.js';
import { runGraft } from '../helpers/process.js';

/*
 * Your own model on a cluster that cannot see your disk: the shipped roles and permissions, a
 * coordinator without --allow-model-files, the cli user publishing with --backbone ./my-model (a
 * TF.js folder, a .pb). The CLI uploads the model to the image store; the coordinator reads it from
 * there, checked against its SHA-256; the workers run it from the model store.
 */

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const ROLE_ENV = { GRAFT_NATS_USER: 'coordinator', GRAFT_NATS_PASSWORD: PASSWORDS.GRAFT_COORDINATOR_PASSWORD };
const CLI_ENV = { GRAFT_NATS_USER: 'cli', GRAFT_NATS_PASSWORD: PASSWORDS.GRAFT_CLI_PASSWORD, GRAFT_LOG_LEVEL: 'warn' };

describe('your model to the cluster - graft publish --backbone ./my-model', () => {
  let c: TestCluster;
  let data: string;
  let admin: Bus;

  before(async () => {
    Object.assign(process.env, PASSWORDS); // nats-server reads the passwords from its environment
    c = new TestCluster([], ROLE_ENV, false);
    await c.start({ workers: 0, natsConfig: await deployedAuthorization(), busUser: { user: 'cli', pass: PASSWORDS.GRAFT_CLI_PASSWORD } });
    c.startWorker([], { GRAFT_NATS_USER: 'worker', GRAFT_NATS_PASSWORD: PASSWORDS.GRAFT_WORKER_PASSWORD });
    admin = await openBus({ servers: c.url, user: 'coordinator', pass: PASSWORDS.GRAFT_COORDINATOR_PASSWORD }, { create: false });
    data = await generateSampleSet(join(c.work, 'shapes'), 5, 31, ['circle', 'square']);
  });
  after(async () => {
    await admin?.close();
    await c?.stop();
  });

  /** Publishes as the cli user with the CLI; returns the job id (printed last). */
  async function publish(args: string[]): Promise<{ jobId: string; output: string }> {
    const r = await runGraft(['publish', data, '--nats', c.url, '--epochs', '3', ...args], { ...CLI_ENV, GRAFT_HOME: c.work });
    assert.equal(r.code, 0, r.output);
    return { jobId: r.output.trim().split('\n').at(-1)!, output: r.output };
  }

  it(
    'a TF.js model folder and a .pb are uploaded by the cli user and run by the workers, with no file access on the coordinator',
    { timeout: 180_000 },
    async () => {
      const folder = (await c.tinyModel()).replace(/^file:\/\//, '').replace(/\/model\.json$/, '');
      const tfjs = await publish(['--backbone', folder]);
      assert.match(tfjs.output, /model file:\/\/.*tiny-model-4: uploaded to the cluster \(.* MB, SHA-256 [0-9a-f]{12}\)/);
      const manifest = (await readManifest(c.bus, tfjs.jobId))!;
      assert.match(manifest.backbone!.uploadSha256 ?? '', /^[0-9a-f]{64}$/, 'the manifest names the upload');
      const done = await c.waitForJob(tfjs.jobId, 90_000);
      assert.equal(done.state, JobState.JOB_STATE_DONE, `${done.error}\n${c.logs()}`);
      assert.equal(done.counts!.extracted, 10);
      assert.equal(done.backbone!.url, manifest.backbone!.url, "the resolved backbone keeps the user's own path (for the model folder)");

      const again = await publish(['--backbone', folder]);
      assert.match(again.output, /already in the cluster/, 'the same model is not sent twice');

      const pb = join(c.work, 'output_graph.pb');
      await writeFile(pb, retrainMobileNetGraph().bytes);
      const graph = await publish(['--backbone', pb]);
      const g = await c.waitForJob(graph.jobId, 90_000);
      assert.equal(g.state, JobState.JOB_STATE_DONE, `${g.error}\n${c.logs()}`);
      assert.equal(g.backbone!.format, 'graph');
      assert.doesNotMatch(c.logs(), /--allow-model-files/, "nothing asked the operator to open the coordinator's disk");
    },
  );

  it('an ONNX model written as PyTorch writes one is uploaded by the cli user and run by the workers on ONNX Runtime', { timeout: 180_000 }, async () => {
    const onnxFile = join(ROOT, 'test', 'fixtures', 'onnx', 'torchvision-style.onnx');
    const p = await publish(['--backbone', onnxFile, '--preprocess', 'imagenet']);
    assert.match(p.output, /torchvision-style\.onnx: uploaded to the cluster \(.* MB, SHA-256 [0-9a-f]{12}\)/);
    const manifest = (await readManifest(c.bus, p.jobId))!;
    assert.equal(
      manifest.backbone!.uploadSha256,
      createHash('sha256')
        .update(await readFile(onnxFile))
        .digest('hex'),
      "named by the file's own SHA-256",
    );
    const done = await c.waitForJob(p.jobId, 90_000);
    assert.equal(done.state, JobState.JOB_STATE_DONE, `${done.error}\n${c.logs()}`);
    assert.equal(done.backbone!.format, 'onnx');
    assert.equal(done.backbone!.dim, 16);
    assert.deepEqual(done.runtimes, ['onnxruntime/cpu']);
  });

  it('--dry-run checks the model as a real publish does', async () => {
    const notModel = join(c.work, 'not-a-model.json');
    await writeFile(notModel, '{"hello": 1}');
    const r = await runGraft(['publish', data, '--dry-run', '--backbone', notModel], CLI_ENV);
    assert.equal(r.code, 1, r.output);
    assert.match(r.output, /--backbone: .*not-a-model\.json is not a TF\.js model\.json \(no modelTopology\/weightsManifest\)/);
  });

  it('a manifest cannot pass a photo, a missing blob or a URL off as an upload', { timeout: 120_000 }, async () => {
    const real = (await readManifest(c.bus, (await publish(['--backbone', (await c.tinyModel()).replace(/^file:\/\//, '')])).jobId))!;
    const photo = real.images[0].sha256;
    const cases: [string, object, RegExp][] = [
      [
        'upload-photo',
        { id: 'custom', url: 'file:///m/model.json', uploadSha256: photo },
        /uploaded model [0-9a-f]{64} is not a TF\.js model\.json \(not JSON\)/,
      ],
      [
        'upload-missing',
        { id: 'custom', url: 'file:///m/model.json', uploadSha256: 'f'.repeat(64) },
        /cannot read uploaded model file f{64}: not in the cluster/,
      ],
      [
        'upload-url',
        { id: 'custom', url: 'https://example.com/model.json', uploadSha256: photo },
        /backbone upload .* is not a SHA-256 standing for a file:\/\/ model/,
      ],
      ['upload-bad', { id: 'custom', url: 'file:///m/model.json', uploadSha256: '../../etc' }, /backbone upload "\.\.\/\.\.\/etc" is not a SHA-256/],
    ];
    const ids: string[] = [];
    for (const [name, backbone] of cases) ids.push(await publishManifest(c.bus, codecs.manifest.create({ ...real, backbone }), `${name}-`));
    for (const [i, [name, , reason]] of cases.entries()) {
      const s = await c.waitForJob(ids[i], 30_000);
      assert.equal(s.state, JobState.JOB_STATE_FAILED, name);
      assert.match(s.error, reason, name);
    }
    assert.equal(c.coordinator!.child.exitCode, null, 'the coordinator is alive');
    assert.ok((await admin.jsm.streams.info(WORKER_STREAMS[0])).state, 'and the cluster too');
  });
});
