// The live widget of chapter 2: the book's upright VAE running in the reader's browser.
//
// The model is `vae-upright`, exported by `python -m avae_tutorial export-onnx` when
// the book is built, and run here by onnxruntime-web on WebAssembly (one thread). The
// graph takes images (N,1,40,40) and sampling matrices (N,2,3) and returns, per image,
// the package's loss (avae_loss with z = mu, in nats) and the reconstruction warped
// back by the inverse matrix. The identity gives the plain VAE, other matrices AVAEs.
// Every file comes from this site (_static/avae_live/): nothing is fetched elsewhere.
//
// Conventions, as in avae_tutorial.transforms: a matrix A *samples* (output pixel p
// reads the input at A [p; 1], normalized coordinates in [-1, 1], y down, bilinear,
// align_corners=False, zeros outside), and rotation(a) = [[cos a, -sin a, 0],
// [sin a, cos a, 0]] turns the picture counter-clockwise on the screen for a > 0.
//
// The search (no gradients): the 24 angles of a 15-degree grid, the identity first, in
// one batch; then a batch every 2.5 degrees within 7.5 degrees of the best; then one
// every 0.5 degrees within 2 degrees of the best. The lowest loss seen wins, so the
// AVAE is never worse than the plain VAE.
//
// For tests, window.avaeLive = {ready, count, digit(i), score(i, deg)}: `ready`
// resolves when the model has loaded; `digit(i)` is test digit i, a Float32Array of
// 1600 values in [0, 1] (row-major 40x40); `score(i, deg)` turns digit i by `deg`
// degrees, as warp(x, rotation(radians(deg))) does, and resolves to {vae, avae, angle}:
// the plain VAE's loss, the AVAE's loss after the search, and the rotation the search
// applied (degrees in [-180, 180), the convention of AlignResult.angle).

const ASSETS = new URL("./avae_live/", import.meta.url);
const MODEL = "vae-upright.onnx";
const SIZE = 40; // the canvas, pixels per side
const COARSE = Array.from({ length: 24 }, (_, k) => 15 * k); // degrees, 0 first
const FINE = [-7.5, -5, -2.5, 2.5, 5, 7.5]; // around the best coarse angle
const FINEST = [-2, -1.5, -1, -0.5, 0.5, 1, 1.5, 2]; // around the best so far

// ------------------------------------------------------------------------------------
// Geometry: the package's warp, in plain JavaScript (for turning the input).
// ------------------------------------------------------------------------------------

/** The sampling matrix [a, b, c, d, e, f] of rotation(radians(deg)), as float32. */
function rotation(deg) {
  const a = Math.fround((deg * Math.PI) / 180);
  const c = Math.fround(Math.cos(a));
  const s = Math.fround(Math.sin(a));
  return [c, -s, 0, s, c, 0];
}

/** warp(x, A) of one 40x40 image: bilinear, zeros outside, align_corners=False. */
function warp(x, A) {
  const out = new Float32Array(SIZE * SIZE);
  const at = (col, row) =>
    col < 0 || row < 0 || col >= SIZE || row >= SIZE ? 0 : x[row * SIZE + col];
  for (let i = 0; i < SIZE; i++) {
    const py = (2 * i + 1) / SIZE - 1; // pixel centres in normalized coordinates
    for (let j = 0; j < SIZE; j++) {
      const px = (2 * j + 1) / SIZE - 1;
      const gx = A[0] * px + A[1] * py + A[2]; // where this pixel reads the input
      const gy = A[3] * px + A[4] * py + A[5];
      const ix = ((gx + 1) * SIZE - 1) / 2; // back to pixel indices
      const iy = ((gy + 1) * SIZE - 1) / 2;
      const x0 = Math.floor(ix);
      const y0 = Math.floor(iy);
      const fx = ix - x0;
      const fy = iy - y0;
      out[i * SIZE + j] =
        (1 - fx) * (1 - fy) * at(x0, y0) + fx * (1 - fy) * at(x0 + 1, y0) +
        (1 - fx) * fy * at(x0, y0 + 1) + fx * fy * at(x0 + 1, y0 + 1);
    }
  }
  return out;
}

/** Degrees wrapped to [-180, 180). */
function wrap(deg) {
  return ((((deg + 180) % 360) + 360) % 360) - 180;
}

// ------------------------------------------------------------------------------------
// The model: loading, one batch, the search.
// ------------------------------------------------------------------------------------

let ort = null; // the onnxruntime-web module
let session = null;
let queue = Promise.resolve(); // runs of one session must not overlap: one at a time
let digits = { labels: [], pixels: [] };

/** Load the runtime, the graph and the test digits; resolves to a short description. */
async function load() {
  if (typeof WebAssembly !== "object" || !WebAssembly.instantiate) {
    throw new Error("this browser has no WebAssembly");
  }
  ort = await import(new URL("ort.wasm.bundle.min.mjs", ASSETS).href);
  ort.env.logLevel = "error";
  ort.env.wasm.numThreads = 1; // threads need cross-origin isolation, which we lack
  ort.env.wasm.proxy = false;
  // The .wasm from this site, never a CDN (the bundle carries its own loader).
  ort.env.wasm.wasmPaths = {
    wasm: new URL("ort-wasm-simd-threaded.wasm", ASSETS).href,
  };
  const [created, data] = await Promise.all([
    ort.InferenceSession.create(new URL(MODEL, ASSETS).href, {
      executionProviders: ["wasm"],
      graphOptimizationLevel: "all",
    }),
    fetch(new URL("digits.json", ASSETS)).then((r) => {
      if (!r.ok) throw new Error(`digits.json: HTTP ${r.status}`);
      return r.json();
    }),
  ]);
  session = created;
  const bytes = Uint8Array.from(atob(data.pixels), (ch) => ch.charCodeAt(0));
  const n = SIZE * SIZE;
  const pixels = data.labels.map((_, i) =>
    Float32Array.from(bytes.subarray(i * n, (i + 1) * n), (v) => v / 255));
  digits = { labels: data.labels, pixels };
  return `onnxruntime-web ${ort.env.versions?.web ?? ""} on WebAssembly, one thread`;
}

/** Losses (n,) and reconstructions (n x 1600) of image x turned by each of `angles`. */
async function batch(x, angles) {
  const n = angles.length;
  const images = new Float32Array(n * SIZE * SIZE);
  const matrices = new Float32Array(n * 6);
  angles.forEach((deg, k) => {
    images.set(x, k * SIZE * SIZE);
    matrices.set(rotation(deg), k * 6);
  });
  const feeds = {
    images: new ort.Tensor("float32", images, [n, 1, SIZE, SIZE]),
    matrices: new ort.Tensor("float32", matrices, [n, 2, 3]),
  };
  const result = queue.then(() => session.run(feeds));
  queue = result.catch(() => {});
  const out = await result;
  return { loss: out.loss.data, recon: out.reconstruction.data };
}

/** The page's search for one image x (already turned): see the header. */
async function search(x) {
  const t0 = performance.now();
  const tried = []; // {deg, loss}, every candidate scored
  let best = null; // {deg, loss, recon}
  const score = async (angles) => {
    const { loss, recon } = await batch(x, angles);
    angles.forEach((deg, k) => {
      tried.push({ deg, loss: loss[k] });
      if (best === null || loss[k] < best.loss) {
        const at = k * SIZE * SIZE;
        best = { deg, loss: loss[k], recon: recon.slice(at, at + SIZE * SIZE) };
      }
    });
    return recon;
  };
  const coarse = await score(COARSE);
  const plain = { loss: tried[0].loss, recon: coarse.slice(0, SIZE * SIZE) }; // A = I
  await score(FINE.map((d) => best.deg + d));
  await score(FINEST.map((d) => best.deg + d));
  const ms = performance.now() - t0;
  return { input: x, plain, best, angle: wrap(best.deg), tried, ms };
}

function checkIndex(i) {
  if (!Number.isInteger(i) || i < 0 || i >= digits.pixels.length) {
    const n = digits.pixels.length;
    throw new RangeError(`digit index: expected an integer in [0, ${n}), got ${i}`);
  }
}

// ------------------------------------------------------------------------------------
// The test contract.
// ------------------------------------------------------------------------------------

const ready = load();
ready.catch(() => {}); // reported on the page (below); awaiting it still rejects

window.avaeLive = {
  ready,
  get count() {
    return digits.pixels.length;
  },
  digit(i) {
    checkIndex(i);
    return digits.pixels[i].slice();
  },
  async score(i, deg) {
    await ready;
    checkIndex(i);
    if (typeof deg !== "number" || !Number.isFinite(deg)) {
      throw new TypeError(`deg: expected a finite number of degrees, got ${deg}`);
    }
    const r = await search(warp(digits.pixels[i], rotation(deg)));
    return { vae: r.plain.loss, avae: r.best.loss, angle: r.angle };
  },
};

// ------------------------------------------------------------------------------------
// The widget: pick or draw a digit, turn it, see both models' answers.
// ------------------------------------------------------------------------------------

const root = document.getElementById("avae-live");
if (root) {
  root.querySelector(".avae-live-status").textContent =
    "Loading the model and the WebAssembly runtime (about 15 MB, once)…";
  ready.then((runtime) => build(root, runtime), (err) => fail(root, err));
}

function fail(root, err) {
  const why = typeof WebAssembly === "object"
    ? `The live widget could not start (${err.message}).`
    : "This browser cannot run WebAssembly, so the live widget is off.";
  root.querySelector(".avae-live-status").textContent =
    `${why} The precomputed player above shows the same view for one digit.`;
  root.classList.add("avae-live-failed");
}

/** A new element with a class and optional text. */
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

/** Paint a 40x40 image: values in [0, 1], white on black as in the book's figures. */
function paint(canvas, x) {
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(SIZE, SIZE);
  for (let k = 0; k < SIZE * SIZE; k++) {
    const v = Math.round(255 * Math.min(1, Math.max(0, x[k])));
    img.data.set([v, v, v, 255], 4 * k);
  }
  ctx.putImageData(img, 0, 0);
}

function imageCanvas(cls) {
  const c = el("canvas", cls);
  c.width = SIZE;
  c.height = SIZE;
  return c;
}

/** A panel: a 40x40 canvas with a caption under it. */
function panel(parent, title) {
  const fig = el("figure", "avae-live-panel");
  const canvas = imageCanvas("avae-live-image");
  const caption = el("figcaption", "", title);
  fig.append(canvas, caption);
  parent.append(fig);
  return { canvas, caption };
}

function build(root, runtime) {
  const status = root.querySelector(".avae-live-status");
  root.classList.add("avae-live-ready");
  const source = new Float32Array(SIZE * SIZE); // the upright digit: picked or drawn
  let deg = 0;

  // Row 1: the test digits, the drawing canvas, the slider.
  const controls = el("div", "avae-live-controls");
  const picker = el("div", "avae-live-picker");
  picker.setAttribute("role", "group");
  picker.setAttribute("aria-label", "test digits");
  digits.pixels.forEach((x, i) => {
    const b = el("button", "avae-live-thumb");
    b.type = "button";
    b.title = `test digit ${i}: a ${digits.labels[i]}`;
    b.dataset.index = i;
    const c = imageCanvas();
    paint(c, x);
    b.append(c);
    b.addEventListener("click", () => pick(i));
    picker.append(b);
  });
  const pad = el("div", "avae-live-pad");
  const draw = imageCanvas("avae-live-draw");
  draw.setAttribute("aria-label", "draw a digit here");
  const clear = el("button", "avae-live-clear", "Clear");
  clear.type = "button";
  pad.append(el("div", "avae-live-label", "The digit (draw on it)"), draw, clear);
  const turn = el("label", "avae-live-turn");
  const slider = el("input", "avae-live-slider");
  Object.assign(slider, { type: "range", min: -180, max: 180, step: 1, value: 0 });
  const turnText = el("span", "avae-live-angle", "turn: 0°");
  turn.append(turnText, slider);
  const side = el("div", "avae-live-side");
  side.append(el("div", "avae-live-label", "Pick a test digit"), picker, turn);
  controls.append(pad, side);

  // Row 2: what the models make of it.
  const outputs = el("div", "avae-live-outputs");
  const shown = panel(outputs, "input");
  const vaeOut = panel(outputs, "VAE");
  const avaeOut = panel(outputs, "AVAE");
  const plot = el("figure", "avae-live-panel avae-live-curve");
  plot.append(el("figcaption", "", "loss against candidate angle"));
  outputs.append(plot);
  root.append(controls, outputs);

  // One computation at a time; moves made meanwhile collapse into one more update.
  let busy = false;
  let again = false;
  async function update() {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    try {
      do {
        again = false;
        const r = await search(warp(source, rotation(deg)));
        show(r);
      } while (again);
    } catch (err) {
      status.textContent = `The search failed: ${err.message}`;
    } finally {
      busy = false;
    }
  }

  function show(r) {
    paint(shown.canvas, r.input);
    shown.caption.textContent = `input\nturned ${signed(deg)}°`;
    paint(vaeOut.canvas, r.plain.recon);
    vaeOut.caption.textContent = `VAE: ${r.plain.loss.toFixed(1)} nats`;
    paint(avaeOut.canvas, r.best.recon);
    avaeOut.caption.textContent =
      `AVAE: ${r.best.loss.toFixed(1)} nats\nsearch turned it ${signed(r.angle)}°`;
    drawCurve(plot, r);
    root.dataset.vae = r.plain.loss; // for tests and the curious
    root.dataset.avae = r.best.loss;
    root.dataset.angle = r.angle;
    root.dataset.shown = Number(root.dataset.shown || 0) + 1; // answers shown so far
    status.textContent = `${r.tried.length} candidate angles in 3 batches: ` +
      `${r.ms.toFixed(0)} ms (${runtime}).`;
  }

  /** Show which thumbnail (if any: -1 for none) the digit came from. */
  function mark(i) {
    for (const b of picker.querySelectorAll("button")) {
      b.setAttribute("aria-pressed", String(Number(b.dataset.index) === i));
    }
  }

  function pick(i) {
    source.set(digits.pixels[i]);
    paint(draw, source);
    mark(i);
    update();
  }

  slider.addEventListener("input", () => {
    deg = Number(slider.value);
    turnText.textContent = `turn: ${signed(deg)}°`;
    update();
  });
  clear.addEventListener("click", () => {
    source.fill(0);
    paint(draw, source);
    mark(-1);
    update();
  });
  drawing(draw, source, () => {
    paint(draw, source);
    mark(-1);
    update();
  });

  pick(digits.labels.indexOf(7) >= 0 ? digits.labels.indexOf(7) : 0);
}

/** Draw with a mouse, pen or finger (pointer events): soft strokes ~2.5 pixels wide. */
function drawing(canvas, x, changed) {
  canvas.style.touchAction = "none"; // a finger draws instead of scrolling the page
  let last = null;
  const at = (e) => {
    const box = canvas.getBoundingClientRect();
    const col = ((e.clientX - box.left) / box.width) * SIZE;
    return [col, ((e.clientY - box.top) / box.height) * SIZE];
  };
  const stamp = (cx, cy) => {
    for (let row = Math.floor(cy - 2); row <= cy + 2; row++) {
      for (let col = Math.floor(cx - 2); col <= cx + 2; col++) {
        if (row < 0 || col < 0 || row >= SIZE || col >= SIZE) continue;
        const d = Math.hypot(col + 0.5 - cx, row + 0.5 - cy); // to the pixel's centre
        const v = Math.min(1, Math.max(0, (1.8 - d) / 0.8));
        x[row * SIZE + col] = Math.max(x[row * SIZE + col], v);
      }
    }
  };
  const stroke = (to) => {
    const from = last ?? to;
    const length = Math.hypot(to[0] - from[0], to[1] - from[1]);
    const steps = Math.max(1, Math.ceil(length * 3)); // a stamp every third of a pixel
    for (let s = 1; s <= steps; s++) {
      const t = s / steps;
      stamp(from[0] + t * (to[0] - from[0]), from[1] + t * (to[1] - from[1]));
    }
    last = to;
    changed();
  };
  canvas.addEventListener("pointerdown", (e) => {
    e.preventDefault();
    canvas.setPointerCapture(e.pointerId);
    last = null;
    stroke(at(e));
  });
  canvas.addEventListener("pointermove", (e) => {
    if (canvas.hasPointerCapture(e.pointerId)) stroke(at(e));
  });
  const end = (e) => {
    last = null;
    if (canvas.hasPointerCapture(e.pointerId)) {
      canvas.releasePointerCapture(e.pointerId);
    }
  };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
}

function signed(deg) {
  const r = Math.round(deg);
  return r > 0 ? `+${r}` : r < 0 ? `−${-r}` : "0";
}

/** The loss at every candidate the search scored, the identity and the best marked. */
function drawCurve(fig, r) {
  const W = 240;
  const H = 120;
  const m = { left: 38, right: 6, top: 6, bottom: 22 };
  const pts = r.tried.map((t) => ({ deg: wrap(t.deg), loss: t.loss }));
  pts.sort((a, b) => a.deg - b.deg);
  const lo = Math.min(...pts.map((p) => p.loss));
  const hi = Math.max(...pts.map((p) => p.loss));
  const X = (deg) => m.left + ((deg + 180) / 360) * (W - m.left - m.right);
  const Y = (loss) =>
    m.top + (1 - (loss - lo) / (hi - lo || 1)) * (H - m.top - m.bottom);
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("class", "avae-live-svg");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "loss against candidate angle");
  const add = (tag, attrs, text) => {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    svg.append(e);
    return e;
  };
  add("line", { x1: m.left, x2: W - m.right, y1: H - m.bottom, y2: H - m.bottom,
    class: "axis" });
  add("line", { x1: m.left, x2: m.left, y1: m.top, y2: H - m.bottom, class: "axis" });
  for (const d of [-180, -90, 0, 90, 180]) {
    add("text", { x: X(d), y: H - 8, "text-anchor": "middle" }, `${d}°`);
  }
  add("text", { x: m.left - 3, y: Y(hi) + 4, "text-anchor": "end" }, hi.toFixed(0));
  add("text", { x: m.left - 3, y: Y(lo) + 4, "text-anchor": "end" }, lo.toFixed(0));
  add("polyline", {
    points: pts.map((p) => `${X(p.deg).toFixed(1)},${Y(p.loss).toFixed(1)}`).join(" "),
    class: "curve",
  });
  add("circle", { cx: X(0), cy: Y(r.plain.loss), r: 3.5, class: "vae" }, undefined)
    .append(titleOf("identity: the plain VAE"));
  add("circle", { cx: X(r.angle), cy: Y(r.best.loss), r: 3.5, class: "avae" })
    .append(titleOf(`best: ${signed(r.angle)}°`));
  fig.querySelector("svg")?.remove();
  fig.prepend(svg);

  function titleOf(text) {
    const t = document.createElementNS(NS, "title");
    t.textContent = text;
    return t;
  }
}
