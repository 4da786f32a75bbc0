// EDF / BDF reader (European Data Format, Kemp et al. 1992; BDF: BioSemi's 24-bit variant).
// Returns the signals that share the most common sample rate, in microvolts, ready to be replayed.

const ASCII = new TextDecoder("ascii");
const UNIT_TO_UV = { uv: 1, "µv": 1, "μv": 1, mv: 1e3, v: 1e6, nv: 1e-3 };

function field(bytes, offset, length) {
  return ASCII.decode(bytes.subarray(offset, offset + length)).trim();
}

function number(bytes, offset, length, name) {
  const text = field(bytes, offset, length);
  const value = Number(text);
  if (text === "" || !Number.isFinite(value)) throw new Error(`EDF header field ${name} is not a number: "${text}"`);
  return value;
}

export function parseEdf(buffer) {
  const bytes = new Uint8Array(buffer);
  if (bytes.length < 256) throw new Error("not an EDF/BDF file: shorter than its 256-byte header");
  const bdf = bytes[0] === 0xff;
  const sampleBytes = bdf ? 3 : 2;
  const headerBytes = number(bytes, 184, 8, "header size");
  let records = number(bytes, 236, 8, "number of records");
  const recordSeconds = number(bytes, 244, 8, "record duration");
  const ns = number(bytes, 252, 4, "number of signals");
  if (ns < 1 || ns > 4096 || headerBytes !== 256 * (ns + 1)) throw new Error("EDF header is inconsistent (signal count vs header size)");
  if (recordSeconds <= 0) throw new Error("EDF record duration must be positive");
  const at = (base, width, i) => 256 + base * ns + width * i;
  const signals = [];
  for (let i = 0; i < ns; i++) {
    signals.push({
      label: field(bytes, 256 + 16 * i, 16),
      unit: field(bytes, at(16 + 80, 8, i), 8),
      physMin: number(bytes, at(16 + 80 + 8, 8, i), 8, "physical minimum"),
      physMax: number(bytes, at(16 + 80 + 16, 8, i), 8, "physical maximum"),
      digMin: number(bytes, at(16 + 80 + 24, 8, i), 8, "digital minimum"),
      digMax: number(bytes, at(16 + 80 + 32, 8, i), 8, "digital maximum"),
      samples: number(bytes, at(16 + 80 + 40 + 80, 8, i), 8, "samples per record"),
    });
  }
  const recordSamples = signals.reduce((sum, s) => sum + s.samples, 0);
  const recordSize = recordSamples * sampleBytes;
  const available = Math.floor((bytes.length - headerBytes) / recordSize);
  if (records < 0 || records > available) records = available; // -1 (unknown) or a truncated file
  if (records < 1) throw new Error("EDF file holds no complete data record");

  // Keep the EEG-like signals: not annotations, sharing the most common rate.
  const candidates = signals.map((s, i) => ({ ...s, index: i })).filter((s) => !/annotations/i.test(s.label) && s.samples > 0);
  const rates = new Map();
  for (const s of candidates) rates.set(s.samples, (rates.get(s.samples) || 0) + 1);
  const [perRecord] = [...rates.entries()].sort((a, b) => b[1] - a[1])[0] || [];
  if (!perRecord) throw new Error("EDF file has no data signal");
  const chosen = candidates.filter((s) => s.samples === perRecord);

  const offsets = [];
  let offset = 0;
  for (const s of signals) {
    offsets.push(offset);
    offset += s.samples;
  }
  const view = new DataView(buffer);
  const data = chosen.map(() => new Float32Array(records * perRecord));
  const notes = [];
  chosen.forEach((s, c) => {
    const gain = (s.physMax - s.physMin) / (s.digMax - s.digMin || 1);
    const unitScale = UNIT_TO_UV[s.unit.toLowerCase()];
    if (unitScale === undefined) notes.push(`${s.label}: unit "${s.unit}" unknown, taken as µV`);
    const toUv = unitScale === undefined ? 1 : unitScale;
    for (let r = 0; r < records; r++) {
      let pos = headerBytes + r * recordSize + offsets[s.index] * sampleBytes;
      for (let k = 0; k < perRecord; k++, pos += sampleBytes) {
        let digital;
        if (bdf) {
          digital = bytes[pos] | (bytes[pos + 1] << 8) | (bytes[pos + 2] << 16);
          if (digital & 0x800000) digital -= 0x1000000;
        } else {
          digital = view.getInt16(pos, true);
        }
        data[c][r * perRecord + k] = ((digital - s.digMin) * gain + s.physMin) * toUv;
      }
    }
  });
  return {
    sfreq: perRecord / recordSeconds,
    chNames: chosen.map((s) => s.label),
    data, // Float32Array per channel, µV
    durationS: records * recordSeconds,
    notes,
  };
}

// base64 of channel-major little-endian float32 samples [start, stop) (the eeg backend's data_b64).
export function chunkB64(recording, start, stop) {
  const n = stop - start;
  const out = new Float32Array(recording.data.length * n);
  recording.data.forEach((channel, c) => out.set(channel.subarray(start, stop), c * n));
  const bytes = new Uint8Array(out.buffer);
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}
