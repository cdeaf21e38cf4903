// chestx viewer: a client of the JSON API (no libraries, no network beyond this server).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { film: null, gray: null, result: null, heat: new Map(), shown: new Set() };

// A token, when the server wants one: from the page's #token=… or asked once per session.
function token() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) sessionStorage.setItem("chestx-token", decodeURIComponent(m[1]));
  return sessionStorage.getItem("chestx-token");
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  const t = token();
  if (t) headers["Authorization"] = "Bearer " + t;
  let r = await fetch(path, Object.assign({}, options, { headers }));
  if (r.status === 401) {
    const given = window.prompt("This server needs a token:");
    if (given) {
      sessionStorage.setItem("chestx-token", given);
      return api(path, options);
    }
  }
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error((body.error && body.error.message) || r.status + " " + r.statusText);
  return body;
}

function status(el, text, isError) {
  el.textContent = text;
  el.className = isError ? "error" : "";
}

// ---- model line ----
api("/v1/model").then((m) => {
  $("model-line").textContent = `${m.architecture} · ${m.classes.length} findings · input ${m.input_size}px · thresholds: ${m.thresholds_source}`;
}).catch((e) => status($("model-line"), "model: " + e.message, true));

// ---- film upload ----
const drop = $("drop");
drop.addEventListener("keydown", (e) => {
  if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("file").click(); }
});
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  if (e.dataTransfer.files.length) predict(e.dataTransfer.files[0]);
});
$("file").addEventListener("change", (e) => { if (e.target.files.length) predict(e.target.files[0]); });

async function predict(file) {
  status($("film-status"), `reading ${file.name}…`);
  const type = file.type || "application/octet-stream";
  try {
    const t0 = performance.now();
    const r = await api("/v1/predict?heatmaps=all&film=true", {
      method: "POST", body: file, headers: { "Content-Type": type },
    });
    await show(r);
    const called = r.findings.filter((f) => f.positive).map((f) => f.finding);
    status($("film-status"), `${file.name}: ${r.film.format.toUpperCase()} ${r.film.width}×${r.film.height}` +
      (r.film.dicom ? `, ${r.film.dicom.photometric}, ${r.film.dicom.bits_stored}-bit` : "") +
      ` · ${called.length ? "called: " + called.join(", ") : "no finding called"} · ${Math.round(performance.now() - t0)} ms`);
    document.body.dataset.ready = "film";
  } catch (e) {
    status($("film-status"), `${file.name}: ${e.message}`, true);
    document.body.dataset.ready = "error";
  }
}

function loadImage(src) {
  return new Promise((ok, fail) => {
    const img = new Image();
    img.onload = () => ok(img);
    img.onerror = () => fail(new Error("the image did not load"));
    img.src = src;
  });
}

function pixels(img) {
  const c = document.createElement("canvas");
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext("2d");
  g.drawImage(img, 0, 0);
  return g.getImageData(0, 0, c.width, c.height);
}

async function show(r) {
  state.result = r;
  const film = await loadImage(r.display);
  state.gray = pixels(film);
  state.heat.clear();
  for (const f of r.findings) {
    if (f.heatmap) state.heat.set(f.finding, pixels(await loadImage(f.heatmap)));
  }
  // Show the called findings' maps, or the most probable finding's when none is called.
  state.shown = new Set(r.findings.filter((f) => f.positive).map((f) => f.finding));
  if (!state.shown.size && r.findings.length) {
    state.shown.add(r.findings.reduce((a, b) => (b.probability > a.probability ? b : a)).finding);
  }
  for (const id of ["film", "heat", "boxes"]) {
    $(id).width = state.gray.width; $(id).height = state.gray.height;
  }
  $("stage").hidden = false; $("controls").hidden = false; $("findings").hidden = false;
  fitOverlays();
  table(r);
  drawFilm(); drawHeat(); drawBoxes();
}

// The overlays take the film canvas's displayed size.
function fitOverlays() {
  const f = $("film");
  for (const id of ["heat", "boxes"]) {
    $(id).style.width = f.clientWidth + "px";
    $(id).style.height = f.clientHeight + "px";
  }
}
window.addEventListener("resize", fitOverlays);

// Windowing: level and width on the display copy's 0–255 scale.
function drawFilm() {
  if (!state.gray) return;
  const level = +$("level").value, width = +$("width").value;
  const lo = level - width / 2;
  const src = state.gray.data;
  const out = new ImageData(state.gray.width, state.gray.height);
  for (let i = 0; i < src.length; i += 4) {
    const v = Math.max(0, Math.min(255, ((src[i] - lo) / width) * 255));
    out.data[i] = out.data[i + 1] = out.data[i + 2] = v;
    out.data[i + 3] = 255;
  }
  $("film").getContext("2d").putImageData(out, 0, 0);
}

// A jet-like colour map: blue → cyan → yellow → red.
function colour(t) {
  const r = Math.min(1, Math.max(0, 1.5 - Math.abs(4 * t - 3)));
  const g = Math.min(1, Math.max(0, 1.5 - Math.abs(4 * t - 2)));
  const b = Math.min(1, Math.max(0, 1.5 - Math.abs(4 * t - 1)));
  return [r * 255, g * 255, b * 255];
}

// The shown findings' maps (their maximum), stretched over the input region; cool parts fade out.
function drawHeat() {
  const c = $("heat"), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  const maps = [...state.shown].map((f) => state.heat.get(f)).filter(Boolean);
  if (!maps.length) return;
  const { width: w, height: h } = maps[0];
  const out = new ImageData(w, h);
  const opacity = +$("opacity").value / 100;
  for (let i = 0; i < w * h; i++) {
    let v = 0;
    for (const m of maps) v = Math.max(v, m.data[4 * i]);
    const t = v / 255;
    const [r, gg, b] = colour(t);
    out.data[4 * i] = r; out.data[4 * i + 1] = gg; out.data[4 * i + 2] = b;
    // The coolest fifth stays clear, so the film shows through where the model did not look.
    out.data[4 * i + 3] = 255 * opacity * Math.min(1, Math.max(0, (t - 0.2) / 0.5));
  }
  const tmp = document.createElement("canvas");
  tmp.width = w; tmp.height = h;
  tmp.getContext("2d").putImageData(out, 0, 0);
  g.imageSmoothingEnabled = true;
  // The map covers the model's input, which is the film's `input_region` (a centre crop for some
  // published models' preprocessing).
  const film = state.result.film;
  const [x0, y0, rw, rh] = film.input_region || [0, 0, film.width, film.height];
  const sx = c.width / film.width, sy = c.height / film.height;
  g.drawImage(tmp, x0 * sx, y0 * sy, rw * sx, rh * sy);
}

// Boxes of every called finding, in the film's coordinates scaled to the display copy.
function drawBoxes() {
  const c = $("boxes"), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  const r = state.result;
  const sx = c.width / r.film.width, sy = c.height / r.film.height;
  const line = Math.max(2, Math.round(c.width / 300));
  g.lineWidth = line;
  g.font = `${6 * line}px system-ui, sans-serif`;
  for (const f of r.findings) {
    for (const b of f.boxes) {
      g.strokeStyle = "#00e676";
      g.strokeRect(b.x * sx, b.y * sy, b.w * sx, b.h * sy);
      g.fillStyle = "#00e676";
      g.fillText(f.finding, b.x * sx + line, Math.max(6 * line, b.y * sy - line));
    }
  }
}

function table(r) {
  const body = $("findings").querySelector("tbody");
  body.replaceChildren();
  for (const f of r.findings) {
    const tr = document.createElement("tr");
    if (f.positive) tr.className = "positive";
    const box = document.createElement("input");
    box.type = "checkbox";
    box.checked = state.shown.has(f.finding);
    box.disabled = !state.heat.has(f.finding);
    box.setAttribute("aria-label", `Overlay the heatmap of ${f.finding}`);
    box.addEventListener("change", () => {
      if (box.checked) state.shown.add(f.finding); else state.shown.delete(f.finding);
      drawHeat();
    });
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.setAttribute("role", "img");
    bar.setAttribute("aria-label", `probability ${f.probability.toFixed(3)}, threshold ${f.threshold.toFixed(3)}`);
    const fill = document.createElement("span");
    fill.className = "fill"; fill.style.width = (100 * f.probability) + "%";
    const mark = document.createElement("span");
    mark.className = "threshold"; mark.style.left = (100 * f.threshold) + "%";
    bar.append(fill, mark);
    const cells = [box, f.finding, null, f.positive ? "yes" : "no", String(f.boxes.length)];
    cells.forEach((v, i) => {
      const td = document.createElement("td");
      if (i === 2) {
        const num = document.createElement("span");
        num.className = "num";
        num.textContent = f.probability.toFixed(3);
        num.title = `threshold ${f.threshold.toFixed(3)}`;
        td.append(bar, num);
      } else if (v instanceof Node) td.append(v); else td.textContent = v;
      tr.append(td);
    });
    body.append(tr);
  }
}

for (const id of ["level", "width"]) $(id).addEventListener("input", drawFilm);
$("opacity").addEventListener("input", drawHeat);
$("reset").addEventListener("click", () => { $("level").value = 128; $("width").value = 255; drawFilm(); });

// ---- report labelling ----
$("label-button").addEventListener("click", labelReport);
$("report").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) labelReport();
});

async function labelReport() {
  const text = $("report").value;
  const out = $("highlighted");
  try {
    const r = await api("/v1/label", { method: "POST", body: text, headers: { "Content-Type": "text/plain" } });
    highlight(out, text, r.reports[0].evidence);
    labels(r.reports[0]);
    document.body.dataset.labelled = "yes";
  } catch (e) {
    status(out, e.message, true);
  }
}

// The text with each evidence phrase marked by its state; offsets are UTF-16, as JS indexes.
function highlight(out, text, evidence) {
  out.replaceChildren();
  out.className = "";
  let at = 0;
  const spans = evidence.slice().sort((a, b) => a.utf16_start - b.utf16_start);
  for (const e of spans) {
    if (e.utf16_start < at) continue; // overlapping mention: the first one shown
    out.append(text.slice(at, e.utf16_start));
    const m = document.createElement("mark");
    m.className = e.status;
    m.textContent = text.slice(e.utf16_start, e.utf16_end);
    m.title = `${e.finding}: ${e.status}${e.rule ? " (" + e.rule + ")" : ""}`;
    out.append(m);
    at = e.utf16_end;
  }
  out.append(text.slice(at));
}

function labels(report) {
  const body = $("labels").querySelector("tbody");
  body.replaceChildren();
  const cue = new Map();
  for (const e of report.evidence) if (e.rule && !cue.has(e.finding)) cue.set(e.finding, e.rule);
  for (const [finding, v] of Object.entries(report.labels)) {
    if (v === null) continue;
    const tr = document.createElement("tr");
    for (const t of [finding, String(v), cue.get(finding) || ""]) {
      const td = document.createElement("td");
      td.textContent = t;
      tr.append(td);
    }
    body.append(tr);
  }
  $("labels").hidden = false;
}

// ---- evaluation (served with --eval) ----
const evaluation = { cases: [] };

fetch("/v1/eval", { headers: token() ? { Authorization: "Bearer " + token() } : {} })
  .then((r) => (r.ok ? r.json() : null))
  .then((e) => { if (e) showEvaluation(e); })
  .catch(() => {});

function cell(tr, text) {
  const td = document.createElement("td");
  td.textContent = text;
  tr.append(td);
}

const fmt = (v, d = 3) => (v === null || v === undefined ? "n/a" : Number(v).toFixed(d));
const at = (scores, t) => (scores || []).find((s) => Math.abs(s.threshold - t) < 1e-9);

function showEvaluation(e) {
  $("eval-panel").hidden = false;
  $("eval-line").textContent = `${e.split} split, ${e.images} films, mean AUC ${fmt(e.mean_auc)} · boxes: ${e.method}`;
  const body = $("eval-table").querySelector("tbody");
  for (const c of e.classes) {
    const tr = document.createElement("tr");
    cell(tr, c.finding);
    cell(tr, String(c.positives));
    cell(tr, c.auc === null ? "n/a" : `${fmt(c.auc)} (${c.ci95 ? fmt(c.ci95[0]) + "–" + fmt(c.ci95[1]) : "n/a"})`);
    for (const s of [at(c.iou, 0.5), at(c.iobb, 0.5)]) cell(tr, s ? `${fmt(s.accuracy)} / ${fmt(s.afp, 2)}` : "—");
    cell(tr, c.quality ? fmt(c.quality.false_boxes_per_negative_film, 2) : "—");
    body.append(tr);
  }
  if (e.has_roc) {
    const roc = $("roc");
    roc.hidden = false;
    authImage(roc, "/v1/eval/roc.png");
  }
  if (e.subgroups) showGaps(e.subgroups);
  evaluation.cases = e.cases;
  const findings = [...new Set(e.cases.map((c) => c.finding))];
  for (const f of findings) {
    const o = document.createElement("option");
    o.value = f; o.textContent = f;
    $("gallery-finding").append(o);
  }
  for (const id of ["gallery-finding", "gallery-outcome"]) $(id).addEventListener("change", gallery);
  gallery();
  document.body.dataset.evaluation = "shown";
}

// The subgroup audit (an evaluation run with --by): its largest gaps, as the report leads with them.
function showGaps(sub) {
  $("gaps").hidden = false;
  $("gaps-caption").textContent = `Subgroups (${(sub.partitions || []).join(", ")}) whose AUC falls furthest below the rest; ` +
    `95% intervals from ${sub.resamples} paired bootstrap resamples over ${sub.unit === "patient" ? "patients" : "films"}`;
  const body = $("gaps-table").querySelector("tbody");
  for (const g of sub.largest || []) {
    const tr = document.createElement("tr");
    const ci = g.gap_ci95 ? ` (${fmt(g.gap_ci95[0])} – ${fmt(g.gap_ci95[1])})` : "";
    cell(tr, g.finding);
    cell(tr, `${g.partition} = ${g.group}`);
    cell(tr, `${g.positives} / ${g.negatives}`);
    cell(tr, fmt(g.auc));
    cell(tr, fmt(g.rest_auc));
    cell(tr, `${g.gap >= 0 ? "+" : ""}${fmt(g.gap)}${ci}`);
    if (g.gap_ci95 && g.gap_ci95[1] < 0) tr.className = "gap-worse";
    body.append(tr);
  }
  $("gaps-none").hidden = (sub.largest || []).length > 0;
  $("gaps-table").hidden = !$("gaps-none").hidden;
}

// Images under /v1/ need the token too, which an <img src> cannot send: fetched, shown as blobs.
function authImage(img, url) {
  const t = token();
  fetch(url, { headers: t ? { Authorization: "Bearer " + t } : {} })
    .then((r) => (r.ok ? r.blob() : Promise.reject(new Error(r.statusText))))
    .then((b) => { img.src = URL.createObjectURL(b); })
    .catch(() => { img.alt += " (not loaded)"; });
}

function gallery() {
  const finding = $("gallery-finding").value, outcome = $("gallery-outcome").value;
  const shown = evaluation.cases.filter((c) => (!finding || c.finding === finding) && (!outcome || c.outcome === outcome));
  const g = $("gallery");
  g.replaceChildren();
  for (const c of shown) {
    const fig = document.createElement("figure");
    const img = document.createElement("img");
    authImage(img, `/v1/eval/overlays/${c.id}`);
    img.alt = `${c.image}, ${c.finding}: ${c.outcome.replace("_", " ")}`;
    const cap = document.createElement("figcaption");
    const o = document.createElement("span");
    o.className = "outcome-" + c.outcome;
    o.textContent = c.outcome.replace("_", " ");
    cap.append(`${c.image} · ${c.finding} · p ${fmt(c.probability)} · `, o,
      ` · ${c.truth.length} true / ${c.detected.length} drawn` + (c.best_iou === null ? "" : ` · IoU ${fmt(c.best_iou, 2)}`));
    fig.append(img, cap);
    g.append(fig);
  }
  $("gallery-count").textContent = `${shown.length} of ${evaluation.cases.length} overlays`;
}
