import { NATS_HELP, NATS_OPTIONS, UsageError, parse } from '../args.js';
import { predictPhotos } from '../predict-flow.js';
import { BACKEND_HELP, CACHE_HELP, THREADS_HELP, type Command } from './command.js';

/* graft predict: a model's answers for a whole collection, on the cluster. */

const predict: Command = {
  summary: 'classify a folder, a list or another job on the cluster; suggest the photos to label next',
  usage: `graft predict MODEL_DIR FOLDER|LIST|JOB [--out predictions.csv|.jsonl] [--top K] [--min-confidence P] [--suggest N]

Publishes the photos without labels (a FOLDER at any depth; a LIST of paths or http(s) URLs,
.csv, .tsv or .jsonl, labels not needed; or the photos of JOB), has the workers extract them
with the model's backbone (photos already extracted cost no backbone call), applies the model's
head on the coordinator, and writes one row per photo to --out as the answers arrive: path, the
answer, its probability, the top K classes, the model's fingerprint. Uses --nats, or the local
cluster of --data (started for the run when none runs). Killed, the same command goes on from the
first row --out lacks.

  --out FILE            answers, .csv or .jsonl (default ./predictions.csv)
  --top K               classes kept per photo (default 3, at most 20)
  --min-confidence P    answer "unknown" where the top class's probability is below P (0 to 1;
                        choose it from report.html's coverage curve)
  --suggest N           also write to-label.csv beside --out: the N photos most worth labelling next
                        (uncertain to the model, spread over the collection), its guess prefilled
  --image-column NAME   a list's image column (default: file_name, image, path, url...)
  --format F            a list's format: csv, tsv or jsonl (default: from its extension)
  --max-image-bytes N   largest photo a list's URL may download (bytes)
  --allow-outside-paths a list may name files outside its folder
  --allow-private-urls  a list may name URLs on private networks (a local server)
  --workers N           workers of the local cluster
  --data DIR            local cluster data folder (default ~/.graft/cluster)
  --json                one JSON document on stdout: the job, the file and its counts
${BACKEND_HELP}
${THREADS_HELP}
${CACHE_HELP}
${NATS_HELP}`,
  options: {
    ...NATS_OPTIONS,
    out: { type: 'string' },
    top: { type: 'string' },
    'min-confidence': { type: 'string' },
    suggest: { type: 'string' },
    'image-column': { type: 'string' },
    format: { type: 'string' },
    'allow-outside-paths': { type: 'boolean' },
    'allow-private-urls': { type: 'boolean' },
    'max-image-bytes': { type: 'string' },
    workers: { type: 'string' },
    data: { type: 'string' },
    backend: { type: 'string' },
    threads: { type: 'string' },
    'cache-dir': { type: 'string' },
    json: { type: 'boolean' },
  },
  async run(argv) {
    const { values: v, positionals } = parse(argv, this.options);
    if (positionals.length !== 2) throw new UsageError('predict takes a model folder and a folder, list or job id: graft predict MODEL_DIR PHOTOS');
    return predictPhotos(positionals[0], positionals[1], v);
  },
};

export { predict };
