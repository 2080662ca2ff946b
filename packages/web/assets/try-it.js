// graft try-it page: loads the bundle's one TF.js model and classifies a photo in the page.
// The model takes [1, size, size, 3] RGB 0..255 and returns class probabilities; the photo is
// drawn onto a size x size canvas first (EXIF orientation applied by the browser, aspect ratio
// not kept, as graft does when it trains).
/* global tf */
(function () {
  'use strict';
  const $ = (id) => document.getElementById(id);
  const status = (text, error) => {
    $('status').textContent = text;
    $('status').className = error ? 'error' : '';
  };
  const state = { model: null, config: null };

  function fromBase64(b64) {
    const bin = atob(b64);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const s = document.createElement('script');
      s.src = src;
      s.onload = resolve;
      s.onerror = () => reject(new Error(`cannot load ${src}`));
      document.head.appendChild(s);
    });
  }

  async function loadModel() {
    const backend = new URLSearchParams(location.search).get('backend');
    if (backend) await tf.setBackend(backend);
    await tf.ready();
    $('backend').textContent = `TF.js backend: ${tf.getBackend()}.`;
    if (location.protocol === 'file:') {
      // Browsers do not fetch file:// URLs: the model comes from model.js when the bundle has one.
      await loadScript('model.js').catch(() => undefined);
      const e = window.GRAFT_EMBEDDED;
      if (!e) throw new Error('this model is too large to open from a file: run  graft serve MODEL_DIR  and open the address it prints');
      const artifacts = {
        modelTopology: e.model.modelTopology,
        weightSpecs: e.model.weightsManifest.flatMap((g) => g.weights),
        weightData: fromBase64(e.weights).buffer,
        format: e.model.format,
      };
      state.config = e.config;
      state.model =
        e.config.format === 'graph-model' ? await tf.loadGraphModel(tf.io.fromMemory(artifacts)) : await tf.loadLayersModel(tf.io.fromMemory(artifacts));
    } else {
      state.config = await (await fetch('graft-web.json')).json();
      // An absolute URL: TF.js finds weights.bin beside model.json from it.
      const url = new URL('model.json', location.href).href;
      state.model = state.config.format === 'graph-model' ? await tf.loadGraphModel(url) : await tf.loadLayersModel(url);
    }
    const c = state.config;
    $('model-meta').textContent = `${c.classes.length} classes · backbone ${c.backbone.id} · test top-1 ${(100 * c.test.top1).toFixed(1)}%`;
    document.body.dataset.ready = 'true';
    status('ready: pick a photo');
  }

  async function classify(source) {
    if (!state.model) return;
    const size = state.config.inputSize;
    const canvas = document.createElement('canvas');
    canvas.width = size;
    canvas.height = size;
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    ctx.imageSmoothingEnabled = true;
    ctx.imageSmoothingQuality = 'high';
    ctx.drawImage(source, 0, 0, size, size);
    const probs = tf.tidy(() => {
      const x = tf.browser.fromPixels(canvas, 3).toFloat().expandDims(0);
      return state.model.predict(x).dataSync();
    });
    const top = Array.from(probs.keys())
      .sort((a, b) => probs[b] - probs[a])
      .slice(0, 5);
    const list = $('predictions');
    list.replaceChildren(
      ...top.map((i) => {
        const li = document.createElement('li');
        li.dataset.label = state.config.classes[i];
        li.dataset.probability = String(probs[i]);
        const label = document.createElement('span');
        label.className = 'label';
        label.textContent = state.config.classes[i];
        const pct = document.createElement('span');
        pct.className = 'pct';
        pct.textContent = `${(100 * probs[i]).toFixed(1)}%`;
        const track = document.createElement('div');
        track.className = 'track';
        const bar = document.createElement('div');
        bar.className = 'bar';
        bar.style.width = `${(100 * probs[i]).toFixed(2)}%`;
        track.appendChild(bar);
        li.append(label, pct, track);
        return li;
      }),
    );
    document.body.dataset.classified = String(Number(document.body.dataset.classified || 0) + 1);
    status(`top-1: ${state.config.classes[top[0]]}`);
  }

  async function classifyFile(file) {
    if (!file) return;
    const url = URL.createObjectURL(file);
    const img = $('preview');
    img.hidden = false;
    img.onload = () => classify(img).catch((err) => status(`${file.name}: ${err.message}`, true));
    img.onerror = () => status(`${file.name}: not an image this browser can read`, true);
    img.src = url;
  }

  const drop = $('drop');
  drop.addEventListener('click', () => $('file').click());
  drop.addEventListener('keydown', (e) => (e.key === 'Enter' || e.key === ' ') && $('file').click());
  $('file').addEventListener('change', (e) => classifyFile(e.target.files[0]));
  drop.addEventListener('dragover', (e) => {
    e.preventDefault();
    drop.classList.add('over');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    classifyFile(e.dataTransfer.files[0]);
  });

  $('camera-start').addEventListener('click', async () => {
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' } });
      $('video').srcObject = stream;
      $('video').style.display = 'block';
      $('camera-shoot').hidden = false;
    } catch (err) {
      status(`no camera: ${err.message}`, true);
    }
  });
  $('camera-shoot').addEventListener('click', () => classify($('video')).catch((err) => status(err.message, true)));

  loadModel().catch((err) => {
    document.body.dataset.ready = 'error';
    status(err.message, true);
  });
})();
