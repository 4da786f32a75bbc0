// The tiles: plain DOM updates from one reply each (textContent only: replies are data, not HTML).

const $ = (id) => document.getElementById(id);

const num = (v, digits = 2) => (typeof v === "number" && Number.isFinite(v) ? v.toFixed(digits) : "–");
const pct = (v) => (typeof v === "number" && Number.isFinite(v) ? `${(v * 100).toFixed(1)}%` : "–");

function setLevel(el, level) {
  el.dataset.level = level || "unknown";
  el.textContent = level ? level.replace("_", " ") : "–";
}

function list(el, items) {
  el.replaceChildren(
    ...items.map((text) => {
      const li = document.createElement("li");
      li.textContent = text;
      return li;
    }),
  );
}

export function renderFatigue(f) {
  const s = f.session || {};
  const face = $("face-state");
  face.dataset.state = f.face_detected ? "detected" : "none";
  face.textContent = f.face_detected ? "detected" : "no face";
  $("face-detail").textContent = f.face_detected
    ? `${f.face_count} face(s) · score ${num(f.detection_score)}`
    : "no face in the last frame";
  const eye = $("eye-state");
  const eyeState = !f.face_detected ? "unknown" : f.eyes_closed ? "closed" : "open";
  eye.dataset.state = eyeState;
  eye.textContent = eyeState === "unknown" ? "–" : eyeState;
  $("ear").textContent = num(f.ear, 3);
  $("ear-threshold").textContent = `${num(s.ear_threshold, 3)}${s.ear_threshold_source ? ` (${s.ear_threshold_source})` : ""}`;
  $("perclos").textContent = pct(s.perclos);
  $("closed-s").textContent = `${num(s.closed_s, 1)} s`;
  $("observed-s").textContent = `${num(s.observed_s, 1)} s`;
  $("blink-rate").textContent = num(s.blink_rate_per_min, 1);
  $("blinks").textContent = s.blink_count ?? 0;
  $("blink-duration").textContent = s.blink_mean_duration_s == null ? "–" : `${num(s.blink_mean_duration_s)} s`;
  $("yawns").textContent = s.yawn_count ?? "–";
  $("mar").textContent = num(f.mar);
  $("nods").textContent = s.nod_count ?? "–";
  $("pitch").textContent = f.head_pose ? `${num(f.head_pose.pitch, 1)}°` : "–";
  setLevel($("fatigue-level"), f.fatigue_level);
  $("fatigue-score").textContent = num(f.prediction);
  $("fatigue-confidence").textContent = num(f.confidence);
  list($("fatigue-reasons"), Array.isArray(f.reasons) ? f.reasons : []);
}

export function renderEmotion(e) {
  const src = e.smoothed || e;
  $("emotion-label").textContent = e.face_detected ? src.label || e.prediction : "no face";
  $("emotion-confidence").textContent = e.face_detected
    ? `${pct(src.confidence)}${e.smoothed ? ` · smoothed over ${e.smoothed.frames} frames` : ""}`
    : "";
  const probs = src.probabilities || {};
  const rows = [];
  for (const [label, p] of Object.entries(probs).sort((a, b) => b[1] - a[1])) {
    const name = document.createElement("span");
    name.textContent = label;
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("i");
    fill.style.width = `${Math.max(0, Math.min(1, p)) * 100}%`;
    track.append(fill);
    const value = document.createElement("span");
    value.className = "num";
    value.textContent = `${(p * 100).toFixed(0)}%`;
    rows.push(name, track, value);
  }
  $("emotion-probs").replaceChildren(...rows);
  $("valence").textContent = num(src.valence);
  $("arousal").textContent = num(src.arousal);
}

export function renderEeg(e) {
  setLevel($("eeg-level"), e.fatigue_level);
  $("eeg-z").textContent = num(e.drowsiness_z);
  renderBands(e.relative_power && e.relative_power.mean);
  const b = e.baseline || {};
  $("eeg-baseline").textContent = b.ready
    ? "vs session baseline"
    : e.analyzed
      ? `prior (baseline ${b.windows ?? 0}/${b.needed ?? "?"})`
      : `buffering ${num(e.buffered_s, 1)} s`;
}

const BAND_COLORS = { delta: "#a78bfa", theta: "#4cc2ff", alpha: "#3ddc84", beta: "#ffb547", gamma: "#ff7ab6" };

function renderBands(relative) {
  const rows = [];
  for (const [band, value] of Object.entries(relative || {})) {
    if (typeof value !== "number") continue;
    const name = document.createElement("span");
    name.textContent = band;
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("i");
    fill.style.width = `${Math.max(0, Math.min(1, value)) * 100}%`;
    fill.style.background = BAND_COLORS[band] || "#4cc2ff";
    track.append(fill);
    const num = document.createElement("span");
    num.className = "num";
    num.textContent = `${(value * 100).toFixed(0)}%`;
    rows.push(name, track, num);
  }
  if (rows.length) $("eeg-bands").replaceChildren(...rows);
}

export function renderFused(fused) {
  $("fused-score").textContent = fused.score == null ? "–" : num(fused.score);
  setLevel($("fused-level"), fused.level === "unknown" ? null : fused.level);
  $("fused-confidence").textContent = num(fused.confidence);
  $("fused-confidence-bar").style.width = `${Math.max(0, Math.min(1, fused.confidence || 0)) * 100}%`;
  const items = (fused.contributions || []).map((c) => {
    const li = document.createElement("li");
    li.dataset.status = c.status;
    const name = document.createElement("b");
    name.textContent = c.modality;
    const text =
      c.status === "used" ? ` ${num(c.score)} × ${num(c.confidence)} · ${Math.round((c.share || 0) * 100)}%` : ` ${c.status}`;
    li.append(name, text);
    li.title = c.detail || "";
    return li;
  });
  $("fused-contributions").replaceChildren(...items);
}

export function renderHealth(pong) {
  const chips = [];
  const backends = pong.backends || {};
  for (const [name, b] of Object.entries(backends)) {
    const chip = document.createElement("span");
    chip.className = "chip";
    const status = typeof b === "string" ? b : b.status || b.state || "unknown";
    const ok = typeof b === "string" ? b === "healthy" : b.ready === true || b.status === "healthy";
    chip.dataset.ok = String(ok);
    chip.dataset.backend = name;
    chip.textContent = `${name}: ${ok ? "ready" : status}`;
    if (b && typeof b === "object" && b.last_latency_ms != null) chip.title = `last latency ${num(b.last_latency_ms, 1)} ms`;
    chips.push(chip);
  }
  const overall = document.createElement("span");
  overall.className = "muted small";
  overall.textContent = `overall: ${pong.status}`;
  $("health").replaceChildren(...chips, overall);
}
