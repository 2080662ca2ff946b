import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { closest } from './did-you-mean.js';
import { DEFAULT_NATS_URL, STORE_LIMIT_NAMES, splitPercentsProblem, type BusOptions, type StoreLimitName } from '@graft/protocol';
import { OPTIMIZERS, expandGrid, parseSweepGrid } from '@graft/head';
import { MAX_AUGMENT_COPIES, parseAugmentSpec } from '@graft/vision';
import type { PublishOptions } from './publish.js';

/* Flags: parsing, validation, and what they become (bus options, publish options). */

/** graft's data folder: $GRAFT_HOME, else ~/.graft. */
export function graftHome(): string {
  return process.env.GRAFT_HOME ?? join(homedir(), '.graft');
}

/** A usage problem: printed with the command's help, exit code 2. */
export class UsageError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'UsageError';
  }
}

export type Options = NonNullable<ParseArgsConfig['options']>;

/** Flags every command that talks to NATS takes. Credentials also come from the environment. */
export const NATS_OPTIONS: Options = {
  nats: { type: 'string' },
  'nats-user': { type: 'string' },
  'nats-tls-ca': { type: 'string' },
};

export const NATS_HELP = `  --nats URL          NATS server(s), comma separated (default $GRAFT_NATS_URL or ${DEFAULT_NATS_URL})
  --nats-user USER    user name; the password comes from $GRAFT_NATS_PASSWORD (never a flag)
  --nats-tls-ca FILE  CA certificate for TLS connections (default $GRAFT_NATS_TLS_CA)
                      ($GRAFT_NATS_TOKEN sets a token)`;

export type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

export function parse(argv: string[], options: Options, positionals = true): { values: Values; positionals: string[] } {
  try {
    const r = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: positionals, strict: true });
    return { values: r.values as Values, positionals: r.positionals };
  } catch (err) {
    throw new UsageError(parseProblem(err as Error & { code?: string }, argv, options));
  }
}

/** node:util's parse error as one line that names the fix (its own words are about `--` and quoting). */
function parseProblem(err: Error & { code?: string }, argv: string[], options: Options): string {
  const flag = /'(-[^' ]+)/.exec(err.message)?.[1] ?? '';
  const name = flag.replace(/^-+/, '').split('=')[0];
  if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const guess = closest(name, Object.keys(options));
    return `unknown option ${flag.split('=')[0]}${guess ? ` (did you mean --${guess}?)` : ''}`;
  }
  if (err.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    // A value that starts with '-' (a negative number) reads as an option: it must be joined with '='.
    const at = argv.findIndex((a) => a === `--${name}`);
    const next = at >= 0 ? argv[at + 1] : undefined;
    if (next?.startsWith('-')) return `--${name} ${next}: a value that starts with '-' must be joined to its option: --${name}=${next}`;
    if (options[name]?.type === 'boolean') return `--${name} takes no value`;
    return `--${name} needs a value`;
  }
  if (err.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL')
    return `unexpected argument ${JSON.stringify(/'([^']*)'/.exec(err.message)?.[1] ?? '')}: this command takes options only`;
  return err.message.split('\n')[0];
}

export function busOptions(v: Values, name: string): BusOptions {
  const env = process.env;
  return {
    servers: (v.nats as string | undefined) ?? env.GRAFT_NATS_URL ?? DEFAULT_NATS_URL,
    name,
    user: (v['nats-user'] as string | undefined) ?? env.GRAFT_NATS_USER,
    pass: env.GRAFT_NATS_PASSWORD,
    token: env.GRAFT_NATS_TOKEN,
    tls: (v['nats-tls-ca'] ?? env.GRAFT_NATS_TLS_CA) ? { caFile: ((v['nats-tls-ca'] as string | undefined) ?? env.GRAFT_NATS_TLS_CA)! } : undefined,
  };
}

export function int(v: Values, key: string, min = 0): number | undefined {
  const raw = v[key];
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${key} must be an integer >= ${min}, got ${JSON.stringify(raw)}`);
  return n;
}

const SIZE_UNITS: Record<string, number> = { '': 1, B: 1, KB: 1e3, MB: 1e6, GB: 1e9, TB: 1e12, KIB: 1024, MIB: 1024 ** 2, GIB: 1024 ** 3, TIB: 1024 ** 4 };

/** `200GB`, `1.5TiB`, `4096`, or `none` (-1: no cap) as bytes. @throws UsageError naming the option. */
export function parseSize(raw: string, what: string): number {
  if (/^(none|unlimited|-1)$/i.test(raw.trim())) return -1;
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?$/i.exec(raw.trim());
  const unit = m ? SIZE_UNITS[(m[2] ?? '').toUpperCase()] : undefined;
  if (!m || unit === undefined) throw new UsageError(`${what}: ${JSON.stringify(raw)} is not a size (e.g. 500MB, 200GB, 1TiB, none)`);
  return Math.round(Number(m[1]) * unit);
}

/** `--max-bytes images=200GB,vectors=20GB` as caps by store. @throws UsageError for an unknown store or size. */
export function storeCaps(v: Values): Partial<Record<StoreLimitName, number>> | undefined {
  const raw = str(v, 'max-bytes');
  if (raw === undefined) return undefined;
  const caps: Partial<Record<StoreLimitName, number>> = {};
  for (const part of raw
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean)) {
    const [store, size] = part.split('=');
    if (!(STORE_LIMIT_NAMES as readonly string[]).includes(store) || size === undefined) {
      throw new UsageError(`--max-bytes: ${JSON.stringify(part)} is not STORE=SIZE with STORE one of ${STORE_LIMIT_NAMES.join(', ')}`);
    }
    caps[store as StoreLimitName] = parseSize(size, `--max-bytes ${store}`);
  }
  return caps;
}

export const MAX_BYTES_HELP = `  --max-bytes S=SIZE[,…]  cap stores, e.g. images=200GB,vectors=20GB (${STORE_LIMIT_NAMES.join(', ')}; none = no cap);
                        applied when they are created, and to existing ones when given. Defaults: results 1GiB,
                        the others only the server's own limit. See the README's "Durability and limits"`;

/** A number >= 0 (0 is a value: no decay, no smoothing). */
function nonNegative(v: Values, key: string): number | undefined {
  const raw = v[key];
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new UsageError(`--${key} must be a number >= 0, got ${JSON.stringify(raw)}`);
  return n;
}

export function num(v: Values, key: string): number | undefined {
  const raw = v[key];
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`--${key} must be a positive number, got ${JSON.stringify(raw)}`);
  return n;
}

export function str(v: Values, key: string): string | undefined {
  return v[key] as string | undefined;
}

// ---- publish / train options ----------------------------------------------------------

export const PUBLISH_OPTIONS: Options = {
  name: { type: 'string' },
  backbone: { type: 'string' },
  bottleneck: { type: 'string' },
  'input-node': { type: 'string' },
  'input-size': { type: 'string' },
  preprocess: { type: 'string' },
  splits: { type: 'string' },
  optimizer: { type: 'string' },
  'learning-rate': { type: 'string' },
  'batch-size': { type: 'string' },
  epochs: { type: 'string' },
  patience: { type: 'string' },
  'validation-percent': { type: 'string' },
  'test-percent': { type: 'string' },
  seed: { type: 'string' },
  'vector-dtype': { type: 'string' },
  'no-standardize': { type: 'boolean' },
  'class-weights': { type: 'string' },
  'weight-decay': { type: 'string' },
  'label-smoothing': { type: 'string' },
  'hidden-units': { type: 'string' },
  dropout: { type: 'string' },
  sweep: { type: 'boolean' },
  'sweep-grid': { type: 'string' },
  augment: { type: 'string' },
  'augment-copies': { type: 'string' },
  audit: { type: 'boolean' },
  'audit-folds': { type: 'string' },
  exclude: { type: 'string' },
  relabel: { type: 'string' },
  add: { type: 'string' },
  format: { type: 'string' },
  'image-column': { type: 'string' },
  'label-column': { type: 'string' },
  'split-column': { type: 'string' },
  'first-label': { type: 'boolean' },
  'allow-outside-paths': { type: 'boolean' },
  'allow-private-urls': { type: 'boolean' },
  'max-image-bytes': { type: 'string' },
  'max-side': { type: 'string' },
  'dry-run': { type: 'boolean' },
  'new-job': { type: 'boolean' },
};

export const PUBLISH_HELP = `  --name NAME               job name (default: the folder's name)
  --backbone SPEC           auto (default: mobilenet_v2_100, the embedded ImageNet MobileNetV2 1.0, no network),
                            mobilenet_v2_035 (embedded MobileNetV2 0.35: faster, weaker), inception_v3_mixed5 (embedded),
                            mobilenet_v2, mobilenet_v3_large, inception_v3, inception_dec_2015 or inception_2015_12_05
                            (the 2015 frozen graph retrain.py used),
                            a TF.js model path / file:// / http(s):// URL, a TensorFlow .pb (ARCHIVE.zip#member.pb too),
                            or an ONNX model (.onnx: NCHW or NHWC, opset 13+)
  --bottleneck NAME         layer, node or (ONNX) value to cut at (global-average-pooled); default the model's output
                            (a .pb: pool_3, else the pooled node before its classifier; an .onnx: the pooled value
                            before its classifier; see graft inspect)
  --input-size N            square input edge for a custom model (default: from the model)
  --input-node NODE         a .pb: the node to feed (default: where its image decoding head ends, else its placeholder)
  --preprocess MODE         unit (x/255, default), symmetric (x/127.5-1), imagenet ((x/255 - mean) / std, torchvision's)
                            or none
  --splits FILE             TSV of "path<TAB>train|validation|test" fixing each image's set
  --validation-percent N    default 10;  --test-percent N  default 10 (stable hash of the file name; 0 = none)
  --optimizer NAME          rmsprop (default), adam, sgd
  --learning-rate X         default 0.001 (sgd 0.01)
  --batch-size N            default: number of classes, clamped to 32..256
  --epochs N                default 100;  --patience N  early stopping, default 10 (0 = off)
  --seed N                  default 1;  --no-standardize  train on raw vectors
  --class-weights W         none (default) or balanced: every class weighs as much (unbalanced sets)
  --weight-decay X          L2 penalty on the head's weights (default 0)
  --label-smoothing X       0 (default) to below 1
  --hidden-units N          a dense + ReLU + dropout layer of N units before the softmax (default none)
  --dropout X               after that layer (default 0.5)
  --sweep                   train a grid of heads on the cached vectors (learning rate, L2, label smoothing,
                            optimizer, batch size, hidden layer), keep the best on validation; see README
  --sweep-grid FILE         that grid as JSON: {"learningRate": [0.001, 0.003], ...} or a list of such objects
  --augment LIST            augmented copies of each training image: flip, crop, scale, brightness (comma separated),
                            computed by the workers and cached (a rerun computes none; validation and test never)
  --augment-copies K        copies per training image (default 4 with --augment; at most 32)
  --audit                   after training, audit the photos from their cached vectors: likely label errors,
                            duplicates, split leaks, outliers (audit.json, the report's Audit section); see graft audit
  --audit-folds K           folds of the audit's out-of-sample probabilities (default 10, 2 to 20)
  --exclude FILE            leave out the photos an audit's fixes list names (graft audit --write-fixes)
  --relabel FILE            give the photos it names their suggested label (none suggested: left out)
  --add FILE                also train on the photos a list labels (graft predict --suggest's to-label.csv, filled in):
                            photos already extracted cost no backbone call
  --vector-dtype T          float32 (default) or float16: on the wire, in the cache and in training memory
  --max-side N              store photos whose longer side is over N px as N px JPEG copies (orientation
                            applied; kept in ~/.graft/shrunk): 12 MP phone photos at 512 measured 41x
                            fewer bytes moved, 8.9x less worker CPU, 3x the images/s (BENCHMARKS.md). Use at
                            least the backbone's input (299 for InceptionV3); cached apart from the originals' vectors
  --dry-run                 print the classes, the images per split and every problem a real publish
                            would refuse (exit 1 when there is one); upload nothing
  --new-job                 publish a new job even when an unfinished job of the same photos and options is
                            under way (by default that job is followed: a rerun after Ctrl-C makes no second job)
Lists (a .csv, .tsv or .jsonl file instead of a folder: path, URL or AutoML "[SET,]location,label" rows):
  --format F                csv, tsv or jsonl (default: from the extension)
  --image-column C, --label-column C, --split-column C   column names (default: file_name/image/path/url,
                            label/class, split/set)
  --first-label             take the first of several labels instead of refusing the row
  --allow-outside-paths     a list may name files outside its own folder (never /proc, /sys, /dev)
  --allow-private-urls      a list may name URLs on this machine or a private network (off: a list could probe it)
  --max-image-bytes N       largest image downloaded from a URL (default 52428800)`;

/**
 * Publish options from flags. Training options carry only what the user typed (an absent
 * flag stays absent, so the coordinator's default applies; 0 is sent as 0).
 * @throws UsageError naming the bad flag.
 */
export function publishOptions(v: Values): PublishOptions {
  const dtype = str(v, 'vector-dtype');
  if (dtype && dtype !== 'float32' && dtype !== 'float16') throw new UsageError(`--vector-dtype must be float32 or float16, got ${dtype}`);
  const optimizer = str(v, 'optimizer');
  if (optimizer !== undefined && !(OPTIMIZERS as readonly string[]).includes(optimizer))
    throw new UsageError(`--optimizer must be one of ${OPTIMIZERS.join(', ')}, got ${optimizer}`);
  const val = int(v, 'validation-percent');
  const test = int(v, 'test-percent');
  // The split policy's own check: the CLI and the coordinator refuse the same percentages.
  const splits = splitPercentsProblem({ validationPercent: val, testPercent: test });
  if (splits) throw new UsageError(`--validation-percent and --test-percent: ${splits}`);
  return {
    newJob: Boolean(v['new-job']),
    name: str(v, 'name'),
    backbone: str(v, 'backbone') ?? 'auto',
    overrides: { bottleneck: str(v, 'bottleneck'), inputSize: int(v, 'input-size', 16), preprocess: str(v, 'preprocess'), inputNode: str(v, 'input-node') },
    splitsFile: str(v, 'splits'),
    vectorDType: dtype as PublishOptions['vectorDType'],
    list: {
      format: listFormat(str(v, 'format')),
      imageColumn: str(v, 'image-column'),
      labelColumn: str(v, 'label-column'),
      splitColumn: str(v, 'split-column'),
      firstLabel: Boolean(v['first-label']),
      allowOutsidePaths: Boolean(v['allow-outside-paths']),
    },
    // Remembers what each URL held, so publishing a list again downloads nothing unchanged.
    download: { maxBytes: int(v, 'max-image-bytes', 1), cacheFile: join(graftHome(), 'url-cache.json'), allowPrivateHosts: Boolean(v['allow-private-urls']) },
    maxSide: int(v, 'max-side', 64),
    shrinkCacheDir: join(graftHome(), 'shrunk'),
    add: str(v, 'add'),
    ...fixesOption(v),
    training: {
      optimizer,
      learningRate: num(v, 'learning-rate'),
      batchSize: int(v, 'batch-size', 1),
      epochs: int(v, 'epochs', 1),
      patience: int(v, 'patience'),
      validationPercent: val,
      testPercent: test,
      seed: int(v, 'seed'),
      standardize: v['no-standardize'] ? false : undefined,
      classWeights: classWeights(str(v, 'class-weights')),
      weightDecay: nonNegative(v, 'weight-decay'),
      labelSmoothing: nonNegative(v, 'label-smoothing'),
      hiddenUnits: int(v, 'hidden-units'),
      dropout: nonNegative(v, 'dropout'),
      ...(v.sweep || str(v, 'sweep-grid') ? { sweep: true, sweepGrid: sweepGridOption(v) } : {}),
      ...augmentOptions(v),
      ...auditOptions(v),
    },
  };
}

/** --audit and --audit-folds K as training options. */
function auditOptions(v: Values): { audit?: boolean; auditFolds?: number } {
  const folds = int(v, 'audit-folds', 2);
  if (folds !== undefined && folds > 20) throw new UsageError(`--audit-folds must be from 2 to 20, got ${folds}`);
  if (!v.audit) {
    if (folds !== undefined) throw new UsageError('--audit-folds needs --audit');
    return {};
  }
  return { audit: true, ...(folds !== undefined ? { auditFolds: folds } : {}) };
}

/** --exclude FILE or --relabel FILE (not both: a photo would be in two minds). */
function fixesOption(v: Values): { fixes?: { mode: 'exclude' | 'relabel'; file: string } } {
  const exclude = str(v, 'exclude');
  const relabel = str(v, 'relabel');
  if (exclude && relabel) throw new UsageError('--exclude and --relabel: give one fixes list (edit it: an empty suggested label leaves the photo out)');
  if (exclude) return { fixes: { mode: 'exclude', file: exclude } };
  return relabel ? { fixes: { mode: 'relabel', file: relabel } } : {};
}

/** --augment LIST and --augment-copies K as training options (the spec in its canonical form). */
function augmentOptions(v: Values): { augment?: string; augmentCopies?: number } {
  const list = str(v, 'augment');
  const copies = int(v, 'augment-copies', 1);
  if (!list) {
    if (copies !== undefined) throw new UsageError('--augment-copies needs --augment');
    return {};
  }
  let augment: string;
  try {
    augment = parseAugmentSpec(list);
  } catch (err) {
    throw new UsageError(`--augment: ${(err as Error).message}`);
  }
  if (copies !== undefined && copies > MAX_AUGMENT_COPIES) throw new UsageError(`--augment-copies must be at most ${MAX_AUGMENT_COPIES}, got ${copies}`);
  return { augment, augmentCopies: copies ?? 4 };
}

/** --sweep-grid FILE's JSON, checked here so a bad grid stops before anything is uploaded. */
export function sweepGridOption(v: Values): string | undefined {
  const file = str(v, 'sweep-grid');
  if (!file) return undefined;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read --sweep-grid ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    expandGrid(parseSweepGrid(text, file), {}, 2);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  return text;
}

function listFormat(f: string | undefined): 'csv' | 'tsv' | 'jsonl' | undefined {
  if (f !== undefined && f !== 'csv' && f !== 'tsv' && f !== 'jsonl') throw new UsageError(`--format must be csv, tsv or jsonl, got ${f}`);
  return f;
}

function classWeights(w: string | undefined): 'none' | 'balanced' | undefined {
  if (w !== undefined && w !== 'none' && w !== 'balanced') throw new UsageError(`--class-weights must be none or balanced, got ${w}`);
  return w;
}
