"""Hostile frames for the container attack tests (issue 10), built from real encodings.

Images come from the image engineer's builders in tests/protocol/test_image_bombs.py (the astronaut
photo as cv2 writes it, edited the way an attacker would); the PNG decompression bomb and the
JSON frames are built here. Every builder returns the exact text frame a client would send.
"""

from __future__ import annotations

import base64
import functools
import json
import struct
import zlib

from shared_protocol.images import PNG_MAGIC
from tests.protocol.test_image_bombs import (
    _astronaut_jpeg,
    _com_segments,
    _forged_png,
    _png_chunk,
    _with_jpeg_size,
)

MiB = 1024 * 1024
GATEWAY_MAX_MESSAGE_SIZE = 16 * MiB  # shared_protocol.limits.DEFAULT_MAX_MESSAGE_SIZE, the compose default

# The EEG flood: channels x samples of one `data` list, every value "1.5" (4 bytes of text with its
# comma, about 32 bytes once decoded into a Python float and its list slot).
FLOOD_CHANNELS = 250  # within the backend's max_channels (256)
FLOOD_SAMPLES = 16384  # its max_chunk_samples: only channels x samples (4,096,000) is over a bound
FLOOD_SFREQ = 256


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


# ---- images ------------------------------------------------------------------------------------


def late_sof_jpeg(width: int = 20000, height: int = 20000, comment_bytes: int = 70_000) -> bytes:
    """The full 512x512 astronaut JPEG whose frame header (SOF0) declares width x height and sits
    behind `comment_bytes` of COM segments: beyond the first 64 KiB the old header peek read."""
    raw = _with_jpeg_size(_astronaut_jpeg(512), width, height)
    out = raw[:2] + _com_segments(comment_bytes) + raw[2:]
    assert out.find(b"\xff\xc0") > 65536, "the frame header must sit beyond the first 64 KiB"
    return out


def honest_late_sof_jpeg() -> bytes:
    """Control: the same layout (frame header beyond 64 KiB of comments) with its true 512x512 size."""
    raw = _astronaut_jpeg(512)
    return raw[:2] + _com_segments(200_000) + raw[2:]


def jpeg_size_bomb(width: int = 16000, height: int = 16000) -> bytes:
    """A small real JPEG whose frame header claims width x height (libjpeg allocates the whole
    output image before it finds the scan data short)."""
    return _with_jpeg_size(_astronaut_jpeg(), width, height)


def forged_png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A well-formed PNG header (valid CRCs) claiming width x height, with a tiny IDAT."""
    return _forged_png(width, height)


@functools.lru_cache(maxsize=1)
def deflate_png_bomb(side: int = 20000) -> bytes:
    """A complete, valid PNG of side x side black 8-bit grayscale pixels: about 1.7 MB on the wire,
    400 M pixels (1.2 GB as the BGR image a vision backend decodes to). Compressed at level 1 so
    building it takes seconds, not tens of seconds."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit grayscale, no interlace
    rows = b"\x00" * (side + 1) * 100  # filter byte 0 + `side` zero pixels, 100 rows at a time
    packer = zlib.compressobj(1)
    idat = b"".join(packer.compress(rows) for _ in range(side // 100)) + packer.flush()
    return PNG_MAGIC + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def analyze_image_frame(request_id: str, raw: bytes, session_id: str = "attack-images") -> str:
    return json.dumps(
        {
            "type": "analyze",
            "request_id": request_id,
            "data": {"session_id": session_id, "timestamp": 1.0, "image": b64(raw)},
        }
    )


# ---- JSON number floods --------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _flood_rows() -> str:
    row = "[" + ",".join(["1.5"] * FLOOD_SAMPLES) + "]"
    return ",".join([row] * FLOOD_CHANNELS)


def eeg_flood_frame(request_id: str, msg_type: str = "analyze") -> str:
    """A frame just under the 16 MiB limit holding FLOOD_CHANNELS x FLOOD_SAMPLES JSON numbers as
    an EEG `data` list; `msg_type` "analyze" or "inference_request" (then with "model": "eeg")."""
    ch_names = [f"E{i:03d}" for i in range(FLOOD_CHANNELS)]
    head = {"type": msg_type, "request_id": request_id}
    if msg_type == "inference_request":
        head["model"] = "eeg"
    eeg_head = json.dumps({"sfreq": FLOOD_SFREQ, "ch_names": ch_names, "unit": "uV"})[:-1]
    data = '{"session_id":"attack-flood","timestamp":1.0,"eeg":' + eeg_head + ',"data":[' + _flood_rows() + "]}}"
    frame = json.dumps(head)[:-1] + ',"data":' + data + "}"
    assert len(frame.encode()) < GATEWAY_MAX_MESSAGE_SIZE, len(frame)
    return frame


def flood_values() -> int:
    return FLOOD_CHANNELS * FLOOD_SAMPLES


# ---- odd JSON values -----------------------------------------------------------------------------


def with_raw_json(message: dict, **raw: str) -> str:
    """`message` as JSON text, each string value equal to a keyword's name replaced by that
    keyword's raw JSON text: how a hostile client writes what json.dumps never would."""
    frame = json.dumps(message)
    for marker, text in raw.items():
        quoted = json.dumps(marker)
        assert frame.count(quoted) == 1, marker
        frame = frame.replace(quoted, text)
    return frame


def eeg_list_data(valid_eeg: dict, first_sample: object, samples: int = 256) -> dict:
    """A valid `data.eeg` turned into the list form, `first_sample` as channel 0's first value."""
    eeg = {key: value for key, value in valid_eeg.items() if key not in ("data_b64", "shape", "dtype")}
    channels = len(valid_eeg["ch_names"])
    eeg["data"] = [[first_sample, *([1.0] * (samples - 1))]] + [[1.0] * samples for _ in range(channels - 1)]
    return eeg


def long_integer(digits: int = 5000) -> str:
    """A JSON integer of `digits` digits (Python's int() refuses more than 4300 by default)."""
    return "7" * digits


LONE_SURROGATE = '"\\ud800"'  # the JSON text of a string holding an unpaired surrogate
