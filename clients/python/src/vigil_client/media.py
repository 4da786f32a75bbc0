"""Inputs for the CLI: EDF/BDF recordings (stdlib only) and video frames (OpenCV, optional extra).

EDF: Kemp et al. 1992, "A simple format for exchange of digitized polygraphic recordings";
BDF is BioSemi's 24-bit variant. Only the signals sharing the most common sample rate are kept
(annotation channels dropped), converted to microvolts.
"""

from __future__ import annotations

import base64
import sys
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

UNIT_TO_UV = {"uv": 1.0, "µv": 1.0, "μv": 1.0, "mv": 1e3, "v": 1e6, "nv": 1e-3}


@dataclass
class Recording:
    sfreq: float
    ch_names: list[str]
    data: list[array]  # one array('f') per channel, µV
    notes: list[str]

    @property
    def n_samples(self) -> int:
        return len(self.data[0])

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.sfreq

    def chunk(self, start: int, stop: int) -> dict[str, Any]:
        """The eeg payload for samples [start, stop): little-endian float32, channel-major."""
        out = array("f")
        for channel in self.data:
            out.extend(channel[start:stop])
        if sys.byteorder != "little":
            out.byteswap()
        return {
            "sfreq": self.sfreq,
            "ch_names": self.ch_names,
            "unit": "uV",
            "data_b64": base64.b64encode(out.tobytes()).decode("ascii"),
            "shape": [len(self.data), stop - start],
        }


def _field(header: bytes, offset: int, length: int) -> str:
    return header[offset : offset + length].decode("ascii", "replace").strip()


def _number(header: bytes, offset: int, length: int, name: str) -> float:
    text = _field(header, offset, length)
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"EDF header field {name} is not a number: {text!r}") from None


def read_edf(path: str | Path) -> Recording:
    raw = Path(path).read_bytes()
    if len(raw) < 256:
        raise ValueError(f"{path}: not an EDF/BDF file (shorter than its 256-byte header)")
    bdf = raw[0] == 0xFF
    width = 3 if bdf else 2
    header_bytes = int(_number(raw, 184, 8, "header size"))
    records = int(_number(raw, 236, 8, "number of records"))
    record_s = _number(raw, 244, 8, "record duration")
    ns = int(_number(raw, 252, 4, "number of signals"))
    if not 1 <= ns <= 4096 or header_bytes != 256 * (ns + 1) or record_s <= 0:
        raise ValueError(f"{path}: inconsistent EDF header")

    def column(base: int, size: int, i: int) -> int:
        return 256 + base * ns + size * i

    labels = [_field(raw, 256 + 16 * i, 16) for i in range(ns)]
    units = [_field(raw, column(96, 8, i), 8) for i in range(ns)]
    pmin = [_number(raw, column(104, 8, i), 8, "physical minimum") for i in range(ns)]
    pmax = [_number(raw, column(112, 8, i), 8, "physical maximum") for i in range(ns)]
    dmin = [_number(raw, column(120, 8, i), 8, "digital minimum") for i in range(ns)]
    dmax = [_number(raw, column(128, 8, i), 8, "digital maximum") for i in range(ns)]
    per_record = [int(_number(raw, column(216, 8, i), 8, "samples per record")) for i in range(ns)]
    record_size = sum(per_record) * width
    available = (len(raw) - header_bytes) // record_size
    if records < 0 or records > available:
        records = available  # -1 (unknown while recording) or a truncated file
    if records < 1:
        raise ValueError(f"{path}: no complete data record")

    candidates = [i for i in range(ns) if "annotation" not in labels[i].lower() and per_record[i] > 0]
    if not candidates:
        raise ValueError(f"{path}: no data signal")
    common = Counter(per_record[i] for i in candidates).most_common(1)[0][0]
    chosen = [i for i in candidates if per_record[i] == common]
    offsets = [sum(per_record[:i]) * width for i in range(ns)]
    notes: list[str] = []
    data: list[array] = []
    for i in chosen:
        scale = UNIT_TO_UV.get(units[i].lower())
        if scale is None:
            notes.append(f"{labels[i]}: unit {units[i]!r} unknown, taken as µV")
            scale = 1.0
        gain = (pmax[i] - pmin[i]) / ((dmax[i] - dmin[i]) or 1.0)
        digital = array("i" if bdf else "h")
        for r in range(records):
            start = header_bytes + r * record_size + offsets[i]
            block = raw[start : start + common * width]
            if bdf:
                digital.extend(int.from_bytes(block[k : k + 3], "little", signed=True) for k in range(0, len(block), 3))
            else:
                values = array("h", block)
                if sys.byteorder != "little":
                    values.byteswap()
                digital.extend(values)
        data.append(array("f", (((d - dmin[i]) * gain + pmin[i]) * scale for d in digital)))
    return Recording(common / record_s, [labels[i] for i in chosen], data, notes)


def video_frames(source: str | int, fps: float, max_width: int = 640) -> Iterator[tuple[float, bytes]]:
    """(video time s, JPEG bytes) sampled at `fps` from a file (by its own clock) or a camera index."""
    try:
        import cv2
    except ImportError:
        raise SystemExit("video input needs OpenCV: pip install 'vigil-client[video]'") from None
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        raise ValueError(f"cannot open video source {source!r}")
    file_fps = capture.get(cv2.CAP_PROP_FPS) if isinstance(source, str) else 0.0
    step = 1.0 / fps
    next_t = 0.0
    index = 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            t = index / file_fps if file_fps > 0 else None
            index += 1
            if t is not None and t + 1e-9 < next_t:
                continue  # a file's frame between two samples at the requested fps
            if frame.shape[1] > max_width:
                scale = max_width / frame.shape[1]
                frame = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])
            if not ok:
                raise ValueError("JPEG encoding failed")
            yield (next_t if t is not None else None), jpeg.tobytes()
            next_t += step
    finally:
        capture.release()
