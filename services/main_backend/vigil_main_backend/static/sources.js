// Frame sources (camera or a local video file) and the EDF replay clock.

import { chunkB64, parseEdf } from "./edf.js";

const MAX_SEND_WIDTH = 480; // frames are downscaled before JPEG encoding: enough for a face mesh
const JPEG_QUALITY = 0.8;

export class VideoSource {
  constructor(kind, video, stream = null, objectUrl = null) {
    this.kind = kind; // "camera" | "file"
    this.video = video;
    this.stream = stream;
    this.objectUrl = objectUrl;
    this.canvas = document.createElement("canvas");
  }

  static async camera(video) {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new Error("this browser gives no camera access here (it needs https or localhost)");
    }
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false });
    video.srcObject = stream;
    await video.play();
    return new VideoSource("camera", video, stream);
  }

  static async file(video, file) {
    const url = URL.createObjectURL(file);
    video.srcObject = null;
    video.src = url;
    video.loop = true;
    video.muted = true;
    await video.play();
    return new VideoSource("file", video, null, url);
  }

  get ready() {
    return this.video.readyState >= 2 && this.video.videoWidth > 0;
  }

  get description() {
    const v = this.video;
    const size = v.videoWidth ? `${v.videoWidth}×${v.videoHeight}` : "";
    return this.kind === "camera" ? `camera ${size}` : `video file ${size} (looping)`;
  }

  // The current frame as base64 JPEG (no data: prefix) with its size, downscaled.
  grab() {
    const v = this.video;
    const scale = Math.min(1, MAX_SEND_WIDTH / v.videoWidth);
    const width = Math.round(v.videoWidth * scale);
    const height = Math.round(v.videoHeight * scale);
    this.canvas.width = width;
    this.canvas.height = height;
    this.canvas.getContext("2d").drawImage(v, 0, 0, width, height);
    const url = this.canvas.toDataURL("image/jpeg", JPEG_QUALITY);
    return { image: url.slice(url.indexOf(",") + 1), width, height };
  }

  stop() {
    if (this.stream) for (const track of this.stream.getTracks()) track.stop();
    this.video.pause();
    this.video.srcObject = null;
    if (this.objectUrl) {
      this.video.removeAttribute("src");
      this.video.load();
      URL.revokeObjectURL(this.objectUrl);
    }
  }
}

// Replays an EDF recording in real time: `take()` returns the samples due since the last call
// that was sent (a dropped request leaves its samples pending for the next one).
export class EegReplay {
  constructor(recording, name) {
    this.recording = recording;
    this.name = name;
    this.length = recording.data[0].length;
    this.startedAt = performance.now();
    this.sent = 0; // samples handed out so far (keeps counting across loops of the file)
    this.maxChunk = Math.round(recording.sfreq * 4); // never more than a 4 s window per request
  }

  static async fromFile(file) {
    return new EegReplay(parseEdf(await file.arrayBuffer()), file.name);
  }

  get description() {
    const r = this.recording;
    return `EEG ${this.name}: ${r.chNames.length} ch @ ${r.sfreq} Hz, ${r.durationS.toFixed(0)} s (looping)`;
  }

  get due() {
    return Math.floor(((performance.now() - this.startedAt) / 1000) * this.recording.sfreq) - this.sent;
  }

  // {timestamp, eeg} for the pending samples, or null when fewer than one is due.
  peek() {
    let due = this.due;
    if (due < 1) return null;
    if (due > this.maxChunk) {
      this.sent += due - this.maxChunk; // far behind (slow server): skip ahead; the server sees a gap
      due = this.maxChunk;
    }
    const r = this.recording;
    let start = this.sent % this.length;
    const count = Math.min(due, this.length - start); // one contiguous piece; the rest goes next time
    const eeg = {
      sfreq: r.sfreq,
      ch_names: r.chNames,
      unit: "uV",
      data_b64: chunkB64(r, start, start + count),
      shape: [r.chNames.length, count],
    };
    return { timestamp: this.sent / r.sfreq, eeg, count };
  }

  commit(count) {
    this.sent += count;
  }
}
