// vigil dashboard: wires the connection, the sources, the tiles and the charts.

import { drawAffect, TimeSeriesChart } from "./charts.js";
import { VigilConnection } from "./connection.js";
import { drawOverlay } from "./overlay.js";
import { EegReplay, VideoSource } from "./sources.js";
import { renderEeg, renderEmotion, renderFatigue, renderFused, renderHealth } from "./tiles.js";

const $ = (id) => document.getElementById(id);
const HEALTH_INTERVAL_MS = 5000;
const EEG_ONLY_HZ = 4; // requests per second when replaying EDF without video

const state = {
  conn: new VigilConnection(),
  video: null, // VideoSource
  eeg: null, // EegReplay
  sessionId: `dash-${Math.random().toString(36).slice(2, 10)}`,
  resetNext: true,
  t0: performance.now(),
  lastTimestamp: -1,
  inFlight: 0,
  counts: { sent: 0, answered: 0, dropped: 0, errors: 0 },
  latencies: [],
  last: { fatigue: null, emotion: null, frame: null },
  loopTimer: null,
  messages: new Map(),
};

const videoEl = document.createElement("video");
videoEl.muted = true;
videoEl.playsInline = true;

const charts = {
  ear: new TimeSeriesChart($("chart-ear"), {
    series: [{ name: "EAR", color: "#4cc2ff" }],
    min: 0,
    max: 0.45,
    thresholds: [{ value: null, color: "#ffb547" }],
  }),
  perclos: new TimeSeriesChart($("chart-perclos"), {
    series: [{ name: "PERCLOS", color: "#ffb547" }],
    min: 0,
    max: 1,
    format: (v) => `${Math.round(v * 100)}%`,
    thresholds: [{ value: 0.15, color: "#ffb54788" }],
  }),
  fused: new TimeSeriesChart($("chart-fused"), {
    series: [
      { name: "score", color: "#ff7ab6" },
      { name: "confidence", color: "#8b98a8" },
    ],
    min: 0,
    max: 1,
    thresholds: [
      { value: 0.4, color: "#ffb54788" },
      { value: 0.7, color: "#ff5d5d88" },
    ],
  }),
  bands: new TimeSeriesChart($("chart-eeg-bands"), {
    series: [
      { name: "delta", color: "#a78bfa" },
      { name: "theta", color: "#4cc2ff" },
      { name: "alpha", color: "#3ddc84" },
      { name: "beta", color: "#ffb547" },
    ],
    min: 0,
    max: 1,
  }),
  eegZ: new TimeSeriesChart($("chart-eeg-z"), {
    series: [{ name: "z", color: "#ff7ab6" }],
    thresholds: [
      { value: 1, color: "#ffb54788" },
      { value: 2, color: "#ff5d5d88" },
    ],
  }),
};

// ---- messages: readable, deduplicated, never blocking ---------------------------------------

function notify(kind, text) {
  const key = `${kind}:${text}`;
  const list = $("messages");
  let entry = state.messages.get(key);
  if (entry) {
    entry.count += 1;
    entry.el.querySelector(".count").textContent = `×${entry.count}`;
    list.prepend(entry.el);
    return;
  }
  for (const placeholder of list.querySelectorAll("li.muted")) placeholder.remove();
  const li = document.createElement("li");
  li.dataset.kind = kind;
  const time = new Date().toLocaleTimeString();
  li.textContent = `${time}  ${text}`;
  const count = document.createElement("span");
  count.className = "count";
  li.append(count);
  list.prepend(li);
  entry = { el: li, count: 1 };
  state.messages.set(key, entry);
  while (list.children.length > 50) {
    const old = list.lastElementChild;
    for (const [k, v] of state.messages) if (v.el === old) state.messages.delete(k);
    old.remove();
  }
}

function bumpError(text) {
  state.counts.errors += 1;
  notify("error", text);
}

// ---- connection ------------------------------------------------------------------------------

function defaultUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host || "127.0.0.1:8765"}/`;
}

state.conn.addEventListener("state", (event) => {
  const { state: s, message } = event.detail;
  const pill = $("conn-status");
  pill.dataset.state = s;
  pill.textContent = s;
  if (message) notify(s === "connected" ? "info" : "error", message);
  if (s === "connected") pollHealth();
});
state.conn.addEventListener("notice", (event) => notify(event.detail.kind, event.detail.text));

function connect() {
  const url = $("ws-url").value.trim() || defaultUrl();
  try {
    state.conn.connect(url, $("token").value.trim());
  } catch (err) {
    notify("error", `bad server URL ${url}: ${err.message}`);
  }
}

async function pollHealth() {
  if (!state.conn.connected) return;
  try {
    const pong = await state.conn.request("health_check");
    renderHealth(pong);
  } catch (err) {
    notify("warn", `health check: ${err.code}: ${err.message}`);
  }
}

// ---- sending ---------------------------------------------------------------------------------

function maxInFlight() {
  return Number($("max-in-flight").value) || 2;
}

function nextTimestamp(candidate) {
  // Timestamps must increase within a session (the fatigue service warns on repeats).
  const t = Math.max(candidate, state.lastTimestamp + 1e-3);
  state.lastTimestamp = t;
  return Number(t.toFixed(4));
}

function tick() {
  const haveVideo = state.video && state.video.ready;
  if (!haveVideo && !state.eeg) return;
  if (!state.conn.connected) return;
  if (state.inFlight >= maxInFlight()) {
    state.counts.dropped += 1; // drop the frame rather than queue it
    return;
  }
  const data = { session_id: state.sessionId };
  let frame = null;
  let eegPiece = null;
  if (haveVideo) {
    frame = state.video.grab();
    data.image = frame.image;
  }
  if (state.eeg) {
    eegPiece = state.eeg.peek();
    if (eegPiece) data.eeg = eegPiece.eeg;
  }
  if (!data.image && !data.eeg) return;
  // With EEG attached its clock is the session clock (chunks must be contiguous in time).
  const t = eegPiece ? eegPiece.timestamp : (performance.now() - state.t0) / 1000;
  data.timestamp = nextTimestamp(t);
  if (state.resetNext) {
    data.reset_session = true;
    state.resetNext = false;
  }
  if (eegPiece) state.eeg.commit(eegPiece.count);
  send(data, frame);
}

async function send(data, frame) {
  state.inFlight += 1;
  state.counts.sent += 1;
  const started = performance.now();
  try {
    const reply = await state.conn.request("analyze", data);
    state.counts.answered += 1;
    const ms = performance.now() - started;
    state.latencies.push(ms);
    if (state.latencies.length > 30) state.latencies.shift();
    onAnalyze(reply.data || {}, frame);
  } catch (err) {
    bumpError(`analyze: ${err.code || "error"}: ${err.message}`);
  } finally {
    state.inFlight -= 1;
  }
}

function onAnalyze(body, frame) {
  const results = body.results || {};
  const errors = body.errors || {};
  const now = performance.now() / 1000;
  for (const [name, error] of Object.entries(errors)) bumpError(`${name}: ${error.code}: ${error.error}`);
  if (results.fatigue) {
    const f = results.fatigue;
    state.last.fatigue = f;
    state.last.frame = frame;
    if (f.warning) notify("warn", `fatigue: ${f.warning}`);
    renderFatigue(f);
    const s = f.session || {};
    charts.ear.push(now, { EAR: f.ear });
    charts.ear.setThreshold(0, s.ear_threshold);
    charts.perclos.push(now, { PERCLOS: s.perclos });
  }
  if (results.emotion) {
    state.last.emotion = results.emotion;
    renderEmotion(results.emotion);
    const src = results.emotion.smoothed || results.emotion;
    drawAffect($("affect"), src.valence, src.arousal);
  }
  if (results.eeg) {
    const e = results.eeg;
    renderEeg(e);
    const rel = (e.relative_power && e.relative_power.mean) || {};
    charts.bands.push(now, rel);
    charts.eegZ.push(now, { z: e.drowsiness_z });
    // Routine notes (still buffering, the reset this page asked for) are not worth a message.
    for (const w of e.warnings || []) if (!/^buffering|reset on request/.test(w)) notify("warn", `eeg: ${w}`);
  }
  if (body.fused) {
    renderFused(body.fused);
    charts.fused.push(now, { score: body.fused.score, confidence: body.fused.confidence });
  }
}

function restartLoop() {
  clearInterval(state.loopTimer);
  const hz = state.video ? Number($("fps").value) || 10 : EEG_ONLY_HZ;
  state.loopTimer = setInterval(() => {
    try {
      tick();
    } catch (err) {
      bumpError(`frame loop: ${err.message}`);
    }
  }, 1000 / hz);
}

// ---- sources ---------------------------------------------------------------------------------

function newSession() {
  state.resetNext = true;
  state.t0 = performance.now();
  state.lastTimestamp = -1;
  state.last = { fatigue: null, emotion: null, frame: null };
  for (const chart of Object.values(charts)) chart.clear();
}

function stopVideo() {
  if (state.video) state.video.stop();
  state.video = null;
}

function showSources() {
  $("source-info").textContent = state.video ? state.video.description : "no video";
  $("eeg-info").textContent = state.eeg ? state.eeg.description : "";
  $("stage-empty").hidden = Boolean(state.video);
}

async function useVideo(factory) {
  stopVideo();
  try {
    state.video = await factory();
    newSession();
    if (state.eeg) state.eeg = new EegReplay(state.eeg.recording, state.eeg.name); // restart its clock too
    if (!state.conn.connected && !state.conn.wanted) connect();
  } catch (err) {
    notify("error", `cannot start the video: ${err.name || ""} ${err.message}`);
  }
  showSources();
  restartLoop();
}

$("start-camera").addEventListener("click", () => useVideo(() => VideoSource.camera(videoEl)));
$("video-file").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) useVideo(() => VideoSource.file(videoEl, file));
  event.target.value = "";
});
$("edf-file").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  event.target.value = "";
  if (!file) return;
  try {
    state.eeg = await EegReplay.fromFile(file);
    for (const note of state.eeg.recording.notes) notify("warn", note);
    newSession();
    if (!state.conn.connected && !state.conn.wanted) connect();
  } catch (err) {
    notify("error", `cannot read ${file.name}: ${err.message}`);
  }
  showSources();
  restartLoop();
});
$("stop").addEventListener("click", () => {
  stopVideo();
  state.eeg = null;
  clearInterval(state.loopTimer);
  showSources();
});
$("fps").addEventListener("change", restartLoop);
$("conn-form").addEventListener("submit", (event) => {
  event.preventDefault();
  connect();
});

// ---- drawing ---------------------------------------------------------------------------------

function drawView() {
  const canvas = $("view");
  const ctx = canvas.getContext("2d");
  if (state.video && state.video.ready) {
    const v = state.video.video;
    if (canvas.width !== v.videoWidth || canvas.height !== v.videoHeight) {
      canvas.width = v.videoWidth;
      canvas.height = v.videoHeight;
    }
    ctx.drawImage(v, 0, 0);
    const frame = state.last.frame;
    if (frame) drawOverlay(ctx, v.videoWidth / frame.width, state.last.fatigue, state.last.emotion);
  } else {
    ctx.fillStyle = "#06090d";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
  }
}

function render() {
  try {
    drawView();
    const now = performance.now() / 1000;
    for (const chart of Object.values(charts)) chart.draw(now);
    const c = state.counts;
    $("sent").textContent = c.sent;
    $("answered").textContent = c.answered;
    $("dropped").textContent = c.dropped;
    $("error-count").textContent = c.errors;
    $("in-flight").textContent = state.inFlight;
    if (state.latencies.length) {
      const sorted = [...state.latencies].sort((a, b) => a - b);
      const last = state.latencies[state.latencies.length - 1];
      $("latency").textContent = `${last.toFixed(0)} ms (median ${sorted[sorted.length >> 1].toFixed(0)})`;
    }
  } catch (err) {
    bumpError(`drawing: ${err.message}`);
  }
  requestAnimationFrame(render);
}

$("ws-url").value = defaultUrl();
drawAffect($("affect"), null, null);
setInterval(pollHealth, HEALTH_INTERVAL_MS);
requestAnimationFrame(render);
connect();
