// Part of `npm run bench` (`--sections active` runs only this): graft predict --suggest against
// random choice, as a labelling loop on clothing-small. Start from a few labelled photos per class,
// label N more per round (the true labels stand in for a person), retrain the default head, and
// measure test top-1 after each round; the same loop picking the N at random is the reference.
import {
  UncertainPool,
  applyDenseHead,
  evaluatePredictions,
  headLayers,
  kCenterGreedy,
  loadHeadModel,
  packageModel,
  poolSize,
  predict,
  seededRandom,
  topClasses,
  trainHead,
} from '@graft/head';
import { now } from './lib.mjs';

/** Test top-1 of the default head trained on these labelled training photos. */
async function roundTop1(job, labelled) {
  const { sets, classes, status } = job;
  const dim = status.backbone.dim;
  const data = {
    dim,
    classes,
    train: { x: labelled.map((i) => sets[1].x[i]), y: labelled.map((i) => sets[1].y[i]) },
    validation: { x: sets[2].x, y: sets[2].y },
  };
  const head = await trainHead(data, {});
  const folder = await packageModel(head, { ...status.backbone, preprocess: 'unit', format: 'layers' }, evaluatePredictions([], [], classes));
  const model = await loadHeadModel(folder);
  return { model, folder, top1: evaluatePredictions(await predict(model, sets[3].x, dim), sets[3].y, classes).top1 };
}

/** What applying a head costs where graft predict applies it (the coordinator, plain JavaScript): microseconds per photo. */
async function headCost(job, folder) {
  const layers = await headLayers(folder);
  const x = job.sets[3].x;
  let sink = 0;
  const t0 = now();
  for (let r = 0; r < 20; r++) for (const v of x) sink += applyDenseHead(layers, v)[0];
  const micros = ((now() - t0) * 1e6) / (20 * x.length);
  return { microsPerPhoto: micros, dim: layers[0].inputs, classes: layers.at(-1).units, check: sink > 0 };
}

/** The next `n` photos to label: at random, or as graft predict --suggest picks them (margin pool, then k-center greedy). */
async function nextPhotos(job, model, unlabelled, n, strategy, rng) {
  if (strategy === 'random') {
    const a = [...unlabelled];
    for (let i = a.length - 1; i > 0; i--) {
      const j = Math.floor(rng() * (i + 1));
      [a[i], a[j]] = [a[j], a[i]];
    }
    return a.slice(0, n);
  }
  const x = job.sets[1].x;
  const probs = await predict(
    model,
    unlabelled.map((i) => x[i]),
    job.status.backbone.dim,
  );
  const pool = new UncertainPool(poolSize(n));
  unlabelled.forEach((i, k) => pool.add({ index: i, margin: topClasses(probs[k], 2).margin }));
  const candidates = pool.sorted();
  return kCenterGreedy(
    candidates.map((c) => x[c.index]),
    n,
  ).map((k) => candidates[k].index);
}

export async function benchActive(job, { start = 5, step = 50, rounds = 8, seed = 17 } = {}) {
  console.error(`\n== active learning: ${start} labelled photos per class, ${step} more per round for ${rounds} rounds`);
  const rng = seededRandom(seed);
  const byClass = new Map();
  job.sets[1].y.forEach((c, i) => byClass.set(c, [...(byClass.get(c) ?? []), i]));
  const initial = [...byClass.values()].flatMap((idx) => {
    const a = [...idx].sort(() => rng() - 0.5);
    return a.slice(0, start);
  });
  const curves = {};
  let cost;
  for (const strategy of ['random', 'suggested']) {
    const pick = seededRandom(seed + 1);
    const labelled = [...initial];
    const curve = [];
    for (let round = 0; ; round++) {
      const { model, folder, top1 } = await roundTop1(job, labelled);
      cost ??= await headCost(job, folder);
      curve.push({ labels: labelled.length, top1 });
      console.error(`${strategy}: round ${round}, ${labelled.length} labels, test top-1 ${(100 * top1).toFixed(1)} %`);
      if (round === rounds) {
        model.dispose();
        break;
      }
      const taken = new Set(labelled);
      const unlabelled = job.sets[1].x.map((_, i) => i).filter((i) => !taken.has(i));
      labelled.push(...(await nextPhotos(job, model, unlabelled, step, strategy, pick)));
      model.dispose();
    }
    curves[strategy] = curve;
  }
  const randomFinal = curves.random.at(-1);
  const reached = curves.suggested.find((p) => p.top1 >= randomFinal.top1);
  return {
    start,
    step,
    rounds,
    classes: job.classes.length,
    pool: job.sets[1].x.length,
    curves,
    head: cost,
    labelsToRandomFinal: reached?.labels,
    shareOfRandomLabels: reached ? reached.labels / randomFinal.labels : undefined,
  };
}
