import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateSampleSet } from '@graft/cli';
import { JobState, STREAMS, codecs, manifestSubject } from '@graft/protocol/testing';
import { initBackend } from '@graft/vision';
import { TestCluster, countsOf } from '../helpers/cluster.js';
import { writeTinyModel } from '../helpers/models.js';
import { runGraft } from '../helpers/process.js';

/** A web server of photos: ETags, a 404, a slow one, a huge one, a redirect, one that fails once. */
async function photoServer(dir: string) {
  const bodies = new Map<string, number>(); // path -> 200 answers with a body
  let flaky = 0;
  const server = createServer(async (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const send = (bytes: Buffer) => {
      const etag = `"${createHash('sha256').update(bytes).digest('hex').slice(0, 16)}"`;
      if (req.headers['if-none-match'] === etag) return void res.writeHead(304, { etag }).end();
      bodies.set(path, (bodies.get(path) ?? 0) + 1);
      res.writeHead(200, { etag, 'content-type': 'image/jpeg' }).end(bytes);
    };
    if (path === '/missing.jpg') return void res.writeHead(404).end();
    if (path === '/moved.jpg') return void res.writeHead(302, { location: '/img/square/square_001.jpg' }).end();
    if (path === '/huge.jpg') return send(Buffer.alloc(300_000, 7));
    if (path === '/flaky.jpg' && flaky++ === 0) return void res.writeHead(503).end();
    if (path === '/flaky.jpg') return send(await readFile(join(dir, 'circle', 'circle_002.jpg')));
    if (path === '/slow.jpg') {
      await new Promise((r) => setTimeout(r, 1500));
      return send(await readFile(join(dir, 'square', 'square_002.jpg')));
    }
    try {
      send(await readFile(join(dir, path.replace(/^\/img\//, ''))));
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { server, base: `http://127.0.0.1:${(server.address() as { port: number }).port}`, bodies };
}

describe('image lists - publish a CSV, TSV or JSONL file of images, local or remote', () => {
  let c: TestCluster;
  let web: Awaited<ReturnType<typeof photoServer>>;
  let model: string;
  let photos: string;

  before(async () => {
    await initBackend();
    c = await new TestCluster().start({ workers: 1 });
    await mkdir(join(c.work, 'm'), { recursive: true });
    model = await writeTinyModel(join(c.work, 'm'), 16);
    photos = await generateSampleSet(join(c.work, 'photos'), 6, 51, ['circle', 'square']);
    web = await photoServer(photos);
  });
  after(async () => {
    web?.server.close();
    await c?.stop();
  });

  it(
    'a CSV of paths and URLs: failed URLs listed by line, the rest trained with exactly its splits; a republish downloads nothing',
    { timeout: 120_000 },
    async () => {
      const rows = [
        'file_name,label,split',
        'photos/circle/circle_000.jpg,circle,train', // line 2
        `${join(photos, 'circle', 'circle_001.jpg')},circle,train`,
        `${web.base}/img/circle/circle_003.jpg,circle,validation`,
        `${web.base}/flaky.jpg,circle,test`, // fails once, then served
        `${web.base}/missing.jpg,circle,train`, // line 6: 404
        'photos/square/square_000.jpg,square,train',
        `${web.base}/moved.jpg,square,train`, // redirect
        `${web.base}/slow.jpg,square,validation`,
        `${web.base}/img/square/square_003.jpg,square,test`,
        `${web.base}/huge.jpg,square,train`, // line 11: over the limit
      ];
      const list = join(c.work, 'list.csv');
      await writeFile(list, `${rows.join('\n')}\n`);
      const publish = () =>
        runGraft(['publish', list, '--nats', c.url, '--backbone', model, '--max-image-bytes', '200000', '--epochs', '2', '--allow-private-urls'], {
          GRAFT_HOME: c.work,
        }); // the test's server is on loopback

      const first = await publish();
      assert.equal(first.code, 0, first.output);
      assert.match(first.output, /missing\.jpg: list\.csv:6: HTTP 404/);
      assert.match(first.output, /huge\.jpg: list\.csv:11: over the 200000-byte limit/);
      const jobId = first.output.trim().split('\n').at(-1)!;
      const s = await c.waitForJob(jobId, 60_000);
      assert.equal(s.state, JobState.JOB_STATE_DONE, `${s.error}\n${c.logs()}`);
      assert.deepEqual(countsOf(s), { total: 8, cached: 0, extracted: 8, failed: 0 });
      assert.deepEqual([s.evaluation!.trainImages, s.evaluation!.validationImages, s.evaluation!.testImages], [4, 2, 2], "the list's own splits");
      const stored = await c.bus.jsm.streams.getMessage(STREAMS.manifests, { last_by_subj: manifestSubject(jobId) });
      const m = codecs.manifest.decode(stored!.data);
      assert.equal(m.images.find((i) => i.path.endsWith('moved.jpg'))!.source, 'list.csv:8', 'each image records its line');

      const downloads = [...web.bodies.values()].reduce((a, b) => a + b, 0);
      const again = await publish();
      assert.equal(again.code, 0, again.output);
      assert.equal(
        [...web.bodies.values()].reduce((a, b) => a + b, 0),
        downloads + 1,
        'only the huge one (no ETag ever stored) is downloaded again',
      );
      const t = await c.waitForJob(again.output.trim().split('\n').at(-1)!, 60_000);
      assert.deepEqual(countsOf(t), { total: 8, cached: 8, extracted: 0, failed: 0 });
    },
  );

  it('every problem of a list is reported with its line, all at once, and nothing is uploaded', { timeout: 60_000 }, async () => {
    const before = (await c.bus.jsm.streams.info(STREAMS.images)).state.bytes;
    const list = join(c.work, 'bad.csv');
    await writeFile(
      list,
      [
        'image,label,split',
        'photos/circle/circle_004.jpg,circle,train',
        'photos/circle/nope.jpg,circle,train',
        'photos/circle/circle_005.jpg,circle,sometimes',
        'photos/square/square_004.jpg,,train',
        'photos/circle/circle_004.jpg,circle,train',
        'gs://bucket/x.jpg,square,train',
        'photos/square/square_005.jpg,square;circle,test',
      ].join('\n'),
    );
    const r = await runGraft(['publish', list, '--nats', c.url], { GRAFT_HOME: c.work });
    assert.equal(r.code, 1, r.output);
    for (const re of [
      /line 3: photos\/circle\/nope\.jpg: no such file/,
      /line 4: unknown split "sometimes"/,
      /line 5: .* has no label/,
      /line 6: .* listed again \(first on line 2\)/,
      /line 7: gs:\/\/bucket\/x\.jpg is not an http\(s\) URL/,
      /line 8: .* has 2 labels/,
    ])
      assert.match(r.output, re);
    assert.match(r.output, /6 problems; nothing was uploaded/);
    assert.equal((await c.bus.jsm.streams.info(STREAMS.images)).state.bytes, before, 'nothing uploaded');
  });

  it('TSV, JSONL (Hugging Face metadata) and the AutoML Vision CSV read as is; --dry-run shows the plan', { timeout: 60_000 }, async () => {
    const dry = async (name: string, text: string, extra: string[] = []) => {
      await writeFile(join(c.work, name), text);
      const r = await runGraft(['publish', join(c.work, name), '--dry-run', ...extra], { GRAFT_HOME: c.work });
      assert.equal(r.code, 0, r.output);
      return r.output;
    };
    const tsv = await dry('list.tsv', 'path\tclass\tset\nphotos/circle/circle_000.jpg\tcircle\ttrain\nphotos/square/square_000.jpg\tsquare\ttest\n');
    assert.match(tsv, /2 images in 2 classes/);
    assert.match(tsv, /circle\s+1\s+0\s+0/);
    assert.match(tsv, /square\s+0\s+0\s+1/);
    const jsonl = await dry(
      'metadata.jsonl',
      '{"file_name":"photos/circle/circle_000.jpg","label":"circle"}\n{"file_name":"photos/square/square_000.jpg","label":["square"]}\n',
    );
    assert.match(jsonl, /2 images in 2 classes/);
    const automl = await dry(
      'automl.csv',
      `TRAIN,photos/circle/circle_000.jpg,circle\nTEST,${web.base}/img/square/square_001.jpg,square\nphotos/square/square_000.jpg,square\n`,
    );
    assert.match(automl, /3 images in 2 classes/);
    assert.match(automl, /circle\s+1\s+0\s+0/);
    const custom = await dry('custom.csv', 'img,kind\nphotos/circle/circle_000.jpg,circle\nphotos/square/square_000.jpg,square\n', [
      '--image-column',
      'img',
      '--label-column',
      'kind',
    ]);
    assert.match(custom, /2 images in 2 classes/);
    const multi = await dry('multi.csv', 'file_name,label\nphotos/circle/circle_000.jpg,circle|round\nphotos/square/square_000.jpg,square\n', [
      '--first-label',
    ]);
    assert.match(multi, /circle/);
  });

  it("a failed image's status names its list line", { timeout: 60_000 }, async () => {
    const broken = join(photos, 'circle', 'broken.jpg');
    // A truncated JPEG: an image by its first bytes (what a list may name), undecodable all the same.
    await writeFile(broken, (await readFile(join(photos, 'circle', 'circle_000.jpg'))).subarray(0, 300));
    const list = join(c.work, 'with-broken.csv');
    await writeFile(
      list,
      `file_name,label\nphotos/circle/circle_000.jpg,circle\nphotos/circle/broken.jpg,circle\nphotos/square/square_000.jpg,square\nphotos/square/square_001.jpg,square\n`,
    );
    const r = await runGraft(['publish', list, '--nats', c.url, '--backbone', model, '--epochs', '2'], { GRAFT_HOME: c.work });
    assert.equal(r.code, 0, r.output);
    const jobId = r.output.trim().split('\n').at(-1)!;
    await c.waitForJob(jobId, 60_000);
    const st = await runGraft(['status', jobId, '--failed', '--nats', c.url]);
    assert.match(st.output, /photos\/circle\/broken\.jpg \(with-broken\.csv:3\): decode_failed/);
  });
});
