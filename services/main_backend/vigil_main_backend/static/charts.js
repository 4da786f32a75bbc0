// Time-series chart on a canvas: several named series over the last `windowS` seconds.

const GRID = "#263140";
const LABEL = "#8b98a8";

export class TimeSeriesChart {
  constructor(canvas, { series, windowS = 60, min = null, max = null, format = (v) => v.toFixed(2), thresholds = [] }) {
    this.canvas = canvas;
    this.series = series.map((s) => ({ ...s, points: [] })); // {name, color, points: [[t, v]]}
    this.windowS = windowS;
    this.min = min;
    this.max = max;
    this.format = format;
    this.thresholds = thresholds; // [{value, color}] drawn as dashed lines
  }

  push(t, values) {
    for (const s of this.series) {
      const v = values[s.name];
      if (typeof v === "number" && Number.isFinite(v)) s.points.push([t, v]);
      while (s.points.length && s.points[0][0] < t - this.windowS) s.points.shift();
    }
  }

  setThreshold(index, value) {
    if (this.thresholds[index]) this.thresholds[index].value = value;
  }

  clear() {
    for (const s of this.series) s.points = [];
  }

  draw(now) {
    const canvas = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const width = Math.max(10, Math.round(canvas.clientWidth * dpr));
    const height = Math.max(10, Math.round(canvas.clientHeight * dpr));
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const w = width / dpr;
    const h = height / dpr;
    ctx.clearRect(0, 0, w, h);
    const pad = { l: 36, r: 6, t: 6, b: 16 };
    const values = this.series.flatMap((s) => s.points.map((p) => p[1]));
    let lo = this.min ?? (values.length ? Math.min(...values) : 0);
    let hi = this.max ?? (values.length ? Math.max(...values) : 1);
    if (this.min === null && this.max === null && hi - lo < 1e-6) {
      lo -= 0.5;
      hi += 0.5;
    } else if (hi - lo < 1e-6) {
      hi = lo + 1;
    }
    const x = (t) => pad.l + ((t - (now - this.windowS)) / this.windowS) * (w - pad.l - pad.r);
    const y = (v) => pad.t + (1 - (v - lo) / (hi - lo)) * (h - pad.t - pad.b);

    ctx.font = "10px system-ui, sans-serif";
    ctx.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const v = lo + ((hi - lo) * i) / 4;
      ctx.strokeStyle = GRID;
      ctx.beginPath();
      ctx.moveTo(pad.l, Math.round(y(v)) + 0.5);
      ctx.lineTo(w - pad.r, Math.round(y(v)) + 0.5);
      ctx.stroke();
      ctx.fillStyle = LABEL;
      ctx.textAlign = "right";
      ctx.fillText(this.format(v), pad.l - 4, y(v) + 3);
    }
    for (let s = 0; s <= this.windowS; s += 15) {
      ctx.textAlign = s === 0 ? "right" : "center";
      ctx.fillText(s === 0 ? "now" : `-${s}s`, x(now - s), h - 3);
    }

    for (const th of this.thresholds) {
      if (typeof th.value !== "number" || th.value < lo || th.value > hi) continue;
      ctx.strokeStyle = th.color;
      ctx.setLineDash([4, 4]);
      ctx.beginPath();
      ctx.moveTo(pad.l, y(th.value));
      ctx.lineTo(w - pad.r, y(th.value));
      ctx.stroke();
      ctx.setLineDash([]);
    }

    ctx.save();
    ctx.beginPath();
    ctx.rect(pad.l, pad.t, w - pad.l - pad.r, h - pad.t - pad.b);
    ctx.clip();
    ctx.lineWidth = 1.6;
    for (const s of this.series) {
      if (!s.points.length) continue;
      ctx.strokeStyle = s.color;
      ctx.beginPath();
      s.points.forEach(([t, v], i) => (i ? ctx.lineTo(x(t), y(v)) : ctx.moveTo(x(t), y(v))));
      ctx.stroke();
      const [lt, lv] = s.points[s.points.length - 1];
      ctx.fillStyle = s.color;
      ctx.beginPath();
      ctx.arc(x(lt), y(lv), 2.5, 0, Math.PI * 2);
      ctx.fill();
    }
    ctx.restore();

    if (this.series.length > 1) {
      ctx.textAlign = "left";
      let lx = pad.l + 4;
      for (const s of this.series) {
        ctx.fillStyle = s.color;
        ctx.fillRect(lx, pad.t + 3, 8, 3);
        ctx.fillStyle = LABEL;
        ctx.fillText(s.name, lx + 11, pad.t + 8);
        lx += ctx.measureText(s.name).width + 22;
      }
    }
  }
}

// Valence (x) / arousal (y) plane with the current point.
export function drawAffect(canvas, valence, arousal) {
  const ctx = canvas.getContext("2d");
  const { width: w, height: h } = canvas;
  ctx.clearRect(0, 0, w, h);
  ctx.strokeStyle = GRID;
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.arc(w / 2, h / 2, w / 2 - 6, 0, Math.PI * 2);
  ctx.moveTo(6, h / 2);
  ctx.lineTo(w - 6, h / 2);
  ctx.moveTo(w / 2, 6);
  ctx.lineTo(w / 2, h - 6);
  ctx.stroke();
  ctx.fillStyle = LABEL;
  ctx.font = "11px system-ui, sans-serif";
  ctx.textAlign = "center";
  ctx.fillText("aroused", w / 2, 16);
  ctx.fillText("calm", w / 2, h - 8);
  ctx.textAlign = "left";
  ctx.fillText("−", 8, h / 2 - 4);
  ctx.textAlign = "right";
  ctx.fillText("+", w - 8, h / 2 - 4);
  if (typeof valence !== "number" || typeof arousal !== "number") return;
  const r = w / 2 - 6;
  ctx.fillStyle = "#4cc2ff";
  ctx.beginPath();
  ctx.arc(w / 2 + valence * r, h / 2 - arousal * r, 6, 0, Math.PI * 2);
  ctx.fill();
}
