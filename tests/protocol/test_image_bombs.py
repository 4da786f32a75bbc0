"""Hostile images: every one is a bad_request decided from the header, before any pixel is decoded.

The files are real JPEG/PNG encodings (the astronaut photo, a gradient) edited the way an attacker
would: a frame header moved behind 64 KiB+ of comments, dimensions rewritten, chunks forged with a
valid CRC.
"""

from __future__ import annotations

import base64
import os
import struct
import subprocess
import sys
import textwrap
import zlib

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from skimage import data

from shared_protocol import BadRequestError
from shared_protocol import images as images_module
from shared_protocol.images import DEFAULT_MAX_PIXELS, decode_image_b64, image_header_size


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _encode(image: np.ndarray, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


def _astronaut_jpeg(size: int = 128) -> bytes:
    bgr = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    return _encode(cv2.resize(bgr, (size, size), interpolation=cv2.INTER_AREA), ".jpg")


def _gradient(width: int, height: int) -> np.ndarray:
    img = np.zeros((height, width, 3), np.uint8)
    img[:, :, 0] = (np.arange(width) % 256).astype(np.uint8)[None, :]
    img[:, :, 1] = (np.arange(height) % 256).astype(np.uint8)[:, None]
    return img


def _with_jpeg_size(raw: bytes, width: int, height: int) -> bytes:
    """Rewrite the baseline frame header (SOF0, as cv2 writes it) to declare another size."""
    sof = raw.find(b"\xff\xc0")
    assert sof > 0
    out = bytearray(raw)
    out[sof + 5 : sof + 7] = height.to_bytes(2, "big")
    out[sof + 7 : sof + 9] = width.to_bytes(2, "big")
    return bytes(out)


def _com_segments(total: int) -> bytes:
    """COM segments (at most 65533 bytes of text each) adding up to `total` bytes of comment."""
    out = b""
    while total > 0:
        chunk = min(total, 65533)
        out += b"\xff\xfe" + (chunk + 2).to_bytes(2, "big") + b"x" * chunk
        total -= chunk
    return out


def _late_sof_jpeg(width: int, height: int, comment_bytes: int = 70_000) -> bytes:
    raw = _with_jpeg_size(_astronaut_jpeg(), width, height)
    return raw[:2] + _com_segments(comment_bytes) + raw[2:]


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _forged_png(width: int, height: int) -> bytes:
    """A well-formed PNG (valid CRCs) declaring width x height RGB, with a tiny zlib IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return images_module.PNG_MAGIC + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


@pytest.fixture
def no_decode(monkeypatch):
    """Fail the test if the module ever hands the bytes to OpenCV."""

    def refuse(*args, **kwargs):
        pytest.fail("cv2.imdecode was called for an image the header check should have refused")

    monkeypatch.setattr(images_module.cv2, "imdecode", refuse)


# ---- the late frame header (issue 10: decoded to 20000x20000, OOM-killed fatigue and emotion) ----


def test_late_frame_header_is_found_and_refused_without_decoding(no_decode):
    raw = _late_sof_jpeg(20000, 20000)
    assert raw.find(b"\xff\xc0") > 65536  # the frame header really sits beyond the old 64 KiB peek
    with pytest.raises(BadRequestError, match="20000x20000"):
        decode_image_b64(_b64(raw))
    assert image_header_size(raw) == ("jpeg", 20000, 20000)


def test_late_frame_header_with_an_honest_size_still_decodes():
    raw = _late_sof_jpeg(128, 128, comment_bytes=200_000)
    assert decode_image_b64(_b64(raw)).shape == (128, 128, 3)


# ---- pixel bombs: tiny files, huge declared images ----


@pytest.mark.parametrize(
    ("raw_factory", "label"),
    [(lambda: _forged_png(30000, 30000), "png"), (lambda: _with_jpeg_size(_astronaut_jpeg(), 16000, 16000), "jpeg")],
    ids=["png-30000x30000", "jpeg-16000x16000"],
)
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({}, "largest side allowed is 4096"), ({"max_side": 65535}, f"at most {DEFAULT_MAX_PIXELS} are allowed")],
    ids=["side-limit", "pixel-limit"],
)
def test_pixel_bombs_are_refused_from_the_header(no_decode, raw_factory, label, kwargs, message):
    raw = raw_factory()
    assert len(raw) < 100_000
    fmt, width, height = image_header_size(raw)
    assert fmt == label
    with pytest.raises(BadRequestError, match=message) as info:
        decode_image_b64(_b64(raw), **kwargs)
    assert f"{width}x{height}" in str(info.value)


def test_forged_png_is_otherwise_well_formed():
    # The bomb is only refused for its size: the same forgery at 8x8 passes the header check.
    assert image_header_size(_forged_png(8, 8)) == ("png", 8, 8)


def test_side_limit_and_pixel_limit_are_separate():
    raw = _encode(_gradient(5000, 100), ".png")  # 500,000 pixels, one long side
    with pytest.raises(BadRequestError, match="5000x100; the largest side allowed is 4096"):
        decode_image_b64(_b64(raw))
    assert decode_image_b64(_b64(raw), max_side=8192).shape == (100, 5000, 3)
    with pytest.raises(BadRequestError, match="5000x100 = 500000 pixels; at most 400000"):
        decode_image_b64(_b64(raw), max_side=8192, max_pixels=400_000)


def test_decoded_shape_is_checked_again(monkeypatch):
    # If the decoder ever produced more than the header declared, the result is still refused.
    raw = _encode(_gradient(64, 48), ".png")
    monkeypatch.setattr(images_module.cv2, "imdecode", lambda buf, flags: np.zeros((48, 5000, 3), np.uint8))
    with pytest.raises(BadRequestError, match="5000x48"):
        decode_image_b64(_b64(raw))


# ---- formats, truncation, malformed headers ----


def _other_format(ext: str) -> bytes:
    return _encode(_gradient(32, 32), ext)


@pytest.mark.parametrize(
    ("raw_factory", "message"),
    [
        (lambda: _other_format(".gif"), r"not JPEG or PNG \(starts with 47 49 46 38 39 61 .*: GIF\)"),
        (lambda: _other_format(".bmp"), r"not JPEG or PNG \(starts with 42 4d .*: BMP\)"),
        (lambda: _other_format(".webp"), r"not JPEG or PNG \(starts with 52 49 46 46 .*: WebP\)"),
        (lambda: _other_format(".tiff"), r"not JPEG or PNG \(starts with 49 49 2a 00 .*: TIFF\)"),
        (lambda: bytes(range(7, 107)), r"not JPEG or PNG \(starts with 07 08 09 0a 0b 0c 0d 0e\)$"),
        (lambda: b"\xff\xd8", r"not JPEG or PNG \(starts with ff d8\)"),
        (lambda: b"\xff\xd8\xff", "truncated JPEG"),
        (lambda: _astronaut_jpeg()[:20], "truncated JPEG"),  # SOI + APP0, no frame header
        (lambda: _astronaut_jpeg()[: _astronaut_jpeg().find(b"\xff\xc0") + 6], "truncated JPEG"),
        (lambda: b"\xff\xd8\xff\xe0\x00\x10" + b"J" * 14 + b"\x00\xff\xc0", r"malformed JPEG \(byte 20"),
        (lambda: b"\xff\xd8\xff\xda\x00\x08" + b"\x00" * 20, "marker 0xDA before the frame header"),
        (lambda: b"\xff\xd8\xff\xd8" + b"\x00" * 20, "marker 0xD8 before the frame header"),
        (lambda: b"\xff\xd8\xff\xfe\x00\x01" + b"\x00" * 20, "segment 0xFE of length 1"),
        (lambda: b"\xff\xd8" + b"\xff\xfe\x00\x02" * 1100, "more than 1024 segments"),
        (lambda: _with_jpeg_size(_astronaut_jpeg(), 0, 64), "declares 0x64 pixels"),
        (lambda: _forged_png(8, 8)[:30], "truncated PNG"),
        (lambda: images_module.PNG_MAGIC + _png_chunk(b"tEXt", b"a\x00b" * 5), "first chunk is not a 13-byte IHDR"),
        (lambda: _forged_png(8, 8)[:29] + b"\x00\x00\x00\x00" + _forged_png(8, 8)[33:], "fails its CRC check"),
        (lambda: _forged_png(0, 8), "declares 0x8 pixels"),
        (lambda: _forged_png(8, 8), "not a decodable image: its PNG header declares 8x8"),
        (lambda: _astronaut_jpeg()[:-3000], None),  # truncated scan data: libjpeg may fill in, or refuse
    ],
    ids=[
        "gif",
        "bmp",
        "webp",
        "tiff",
        "random",
        "soi-only",
        "jpeg-magic-only",
        "jpeg-no-frame-header",
        "jpeg-cut-inside-frame-header",
        "jpeg-garbage-between-segments",
        "jpeg-scan-before-frame",
        "jpeg-second-soi",
        "jpeg-short-segment",
        "jpeg-segment-flood",
        "jpeg-zero-width",
        "png-truncated-ihdr",
        "png-first-chunk-not-ihdr",
        "png-bad-ihdr-crc",
        "png-zero-width",
        "png-bad-pixel-data",
        "jpeg-truncated-scan",
    ],
)
def test_bad_headers_are_precise_bad_requests(raw_factory, message):
    raw = raw_factory()
    if message is None:
        try:
            image = decode_image_b64(_b64(raw))
        except BadRequestError:
            return
        assert image.shape == (128, 128, 3)
        return
    with pytest.raises(BadRequestError, match=message):
        decode_image_b64(_b64(raw))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "missing field 'image'"),
        (b"\xff\xd8\xff", "truncated JPEG"),  # raw bytes (the binary form) are checked like decoded base64
        (3.5, "must be a base64 string, got float"),
        ({"b64": "x"}, "must be a base64 string, got dict"),
        ("", "is empty"),
        ("data:image/jpeg;base64,", "is empty"),
        ("data:image/jpeg;base64", "data URL without a ','"),
        ("data:image/gif;base64," + _b64(b"GIF89a" + b"\x00" * 20), "not JPEG or PNG .*GIF"),
        ("/9j/\n", "not valid base64"),
        ("/9j", "not valid base64"),
        ("====", "not valid base64"),
        ("AA==AA==", "not valid base64"),
    ],
)
def test_bad_values_are_precise_bad_requests(value, message):
    with pytest.raises(BadRequestError, match=message):
        decode_image_b64(value)


def test_data_url_jpeg_decodes():
    raw = _astronaut_jpeg(96)
    assert decode_image_b64("data:image/jpeg;base64," + _b64(raw)).shape == (96, 96, 3)


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_valid_images_decode_to_their_shape(ext):
    img = _gradient(301, 123)
    raw = _encode(img, ext)
    assert image_header_size(raw)[1:] == (301, 123)
    decoded = decode_image_b64(_b64(raw))
    assert decoded.shape == (123, 301, 3) and decoded.dtype == np.uint8


def test_progressive_jpeg_is_accepted():
    img = _gradient(200, 80)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert ok and b"\xff\xc2" in buf.tobytes()  # SOF2: progressive
    assert decode_image_b64(_b64(buf.tobytes())).shape == (80, 200, 3)


# ---- OpenCV's own pixel limit (second line of defence) ----

_CV2_LIMIT_PROBE = textwrap.dedent(
    """
    import logging, sys
    logging.basicConfig(level=logging.WARNING)
    if sys.argv[1] == "cv2-first":
        import cv2
    import shared_protocol.images
    import os, cv2, numpy as np
    print("env", os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS"))
    ok, buf = cv2.imencode(".png", np.zeros((4097, 4097), np.uint8))  # 1 pixel row over 4096x4096
    try:
        image = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    except cv2.error as exc:  # OpenCV raises when its limit is exceeded
        print("refused", exc)
        image = None
    print("decoded", image is not None)
    """
)


def _probe(mode: str, env_value: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_IO_MAX_IMAGE_PIXELS"}
    if env_value is not None:
        env["OPENCV_IO_MAX_IMAGE_PIXELS"] = env_value
    return subprocess.run(
        [sys.executable, "-c", _CV2_LIMIT_PROBE, mode], env=env, capture_output=True, text=True, timeout=120, check=True
    )


def test_opencv_pixel_limit_is_set_when_images_is_imported_first():
    limited = _probe("images-first", None)
    assert f"env {DEFAULT_MAX_PIXELS}" in limited.stdout
    assert "decoded False" in limited.stdout, limited.stdout + limited.stderr
    assert "CV_IO_MAX_IMAGE_PIXELS" in limited.stdout
    # Control: the same decode succeeds under OpenCV's own default, so the limit above is ours.
    unlimited = _probe("images-first", str(2**30))
    assert "decoded True" in unlimited.stdout, unlimited.stdout + unlimited.stderr


def test_late_import_of_images_warns_that_the_opencv_limit_is_not_applied():
    late = _probe("cv2-first", None)
    assert "decoded True" in late.stdout
    assert "OPENCV_IO_MAX_IMAGE_PIXELS" in late.stderr
    preset = _probe("cv2-first", str(DEFAULT_MAX_PIXELS))  # the way services should set it
    assert "decoded False" in preset.stdout
    assert "OPENCV_IO_MAX_IMAGE_PIXELS" not in preset.stderr


# ---- property: mutated real files never escape as anything but BadRequestError ----

_SEEDS = {
    "jpeg": _astronaut_jpeg(48),
    "png": _encode(cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (40, 30)), ".png"),
}
_LIMITS = {"max_side": 640, "max_pixels": 320 * 240}


def _set_size(raw: bytearray, width: int, height: int) -> None:
    """Rewrite the declared size in place: PNG IHDR (with a fresh CRC) or the first SOF0."""
    if raw.startswith(images_module.PNG_MAGIC) and len(raw) >= 33:
        raw[16:24] = struct.pack(">II", width, height)
        raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])))
    else:
        sof = raw.find(b"\xff\xc0")
        if sof > 0:
            raw[sof + 5 : sof + 9] = struct.pack(">HH", height, width)


@st.composite
def _mutated(draw):
    kind = draw(st.sampled_from(sorted(_SEEDS)))
    raw = bytearray(_SEEDS[kind])
    # Keep the magic bytes most of the time, so most examples reach the header parser and decoder.
    first = 0 if draw(st.integers(0, 9)) == 0 else (8 if kind == "png" else 3)
    header = min(len(raw), 700)  # mutate the header hard, the rest now and then
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["set", "set", "set", "insert", "delete", "truncate", "size"]))
        if len(raw) <= first:
            break
        if op == "size":
            _set_size(raw, draw(st.integers(0, 65535)), draw(st.integers(0, 65535)))
            continue
        limit = header if draw(st.booleans()) else len(raw)
        pos = draw(st.integers(first, max(first, min(limit, len(raw)) - 1)))
        if op == "set":
            raw[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            raw[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del raw[pos : pos + draw(st.integers(1, 16))]
        else:
            del raw[pos:]
    return bytes(raw)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated())
def test_mutated_images_decode_within_limits_or_are_bad_requests(raw):
    try:
        image = decode_image_b64(_b64(raw), **_LIMITS)
    except BadRequestError:
        return
    assert isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
    height, width = image.shape[:2]
    assert 0 < max(width, height) <= _LIMITS["max_side"]
    assert width * height <= _LIMITS["max_pixels"]
