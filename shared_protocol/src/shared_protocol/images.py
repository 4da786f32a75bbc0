"""Image payload decoding for vision backends: base64 -> BGR uint8 ndarray, with clear errors.

Optional module: needs numpy and opencv-python-headless, which the core protocol does not.

Hostile images are refused before any pixel is decoded: only JPEG and PNG (by magic bytes), and
the real width and height are read from the whole header (every JPEG segment up to the frame
header, the PNG IHDR chunk) and bounded by `max_side` and `max_pixels`. A small file can declare
a huge image (a 4 MB JPEG decodes to 20000x20000 = 1.2 GB of BGR), so the header is the only
safe place to refuse it.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import sys
import zlib

DEFAULT_MAX_IMAGE_BYTES = 8 * 1024 * 1024  # decoded bytes of the compressed image
DEFAULT_MAX_SIDE = 4096  # pixels; larger frames are refused before any model work
DEFAULT_MAX_PIXELS = 4096 * 4096  # width x height; 48 MiB as BGR uint8
# Real JPEGs carry a handful of segments (APPn, DQT, DHT, COM) before the frame header; a file
# of millions of empty segments only costs us CPU, so the scan gives up well before that.
MAX_JPEG_SEGMENTS_BEFORE_FRAME = 1024

# Second line of defence: OpenCV's own limit (its default is 2**30 pixels). OpenCV reads the
# variable once, when cv2 is first imported in the process, so this only applies if this module
# imports cv2 first; services that import cv2 earlier must set OPENCV_IO_MAX_IMAGE_PIXELS in
# their environment (image/compose). An operator's value always wins (setdefault).
_CV2_ALREADY_IMPORTED = "cv2" in sys.modules
_CV2_LIMIT_PRESET = "OPENCV_IO_MAX_IMAGE_PIXELS" in os.environ
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(DEFAULT_MAX_PIXELS))

import cv2  # noqa: E402  (after the environment variable above, on purpose)
import numpy as np  # noqa: E402

from .errors import BadRequestError  # noqa: E402

log = logging.getLogger(__name__)
if _CV2_ALREADY_IMPORTED and not _CV2_LIMIT_PRESET:
    log.warning(
        "cv2 was imported before shared_protocol.images: OpenCV's pixel limit stays at its default; "
        "set OPENCV_IO_MAX_IMAGE_PIXELS=%d in the environment (the header checks still apply)",
        DEFAULT_MAX_PIXELS,
    )

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"  # SOI, then the first marker's 0xFF
# Formats a client might send by mistake, named in the refusal so the message says what it got.
_OTHER_MAGIC = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x01\x00", "ICO"),
)
# JPEG frame headers (SOF0-3, 5-7, 9-11, 13-15): all carry height and width; any of them is accepted.
_JPEG_SOF = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))
_JPEG_STANDALONE = frozenset((0x01, *range(0xD0, 0xD8)))  # TEM, RST0-7: no length field
_FILL = re.compile(rb"\xff+")  # any number of 0xFF fill bytes may precede a marker


def decode_image_b64(
    value: object,
    *,
    field: str = "image",
    max_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    max_side: int = DEFAULT_MAX_SIDE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode a base64 JPEG/PNG (optionally a `data:image/...;base64,` URL) to a BGR image; in the
    binary form (vigil.msgpack) the field may carry the JPEG/PNG bytes themselves."""
    if value is None:
        raise BadRequestError(f"missing field '{field}' (base64-encoded JPEG or PNG)")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _decode_raw(bytes(value), field, max_bytes, max_side, max_pixels)
    if not isinstance(value, str):
        raise BadRequestError(f"field '{field}' must be a base64 string, got {type(value).__name__}")
    text = value
    if text.startswith("data:"):
        _, sep, text = text.partition(",")
        if not sep:
            raise BadRequestError(f"field '{field}' is a data URL without a ',' before the payload")
    if not text:
        raise BadRequestError(f"field '{field}' is empty")
    # Check the size before decoding: base64 is 4 chars per 3 bytes.
    if len(text) // 4 * 3 > max_bytes + 3:
        raise BadRequestError(f"field '{field}' is larger than {max_bytes} bytes")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequestError(f"field '{field}' is not valid base64: {exc}") from None
    if not raw:
        raise BadRequestError(f"field '{field}' decodes to zero bytes")
    return _decode_raw(raw, field, max_bytes, max_side, max_pixels)


def _decode_raw(raw: bytes, field: str, max_bytes: int, max_side: int, max_pixels: int) -> np.ndarray:
    if not raw:
        raise BadRequestError(f"field '{field}' is empty")
    if len(raw) > max_bytes:
        raise BadRequestError(f"field '{field}' is larger than {max_bytes} bytes")
    fmt, width, height = image_header_size(raw, field=field)
    _check_dimensions(width, height, field, max_side, max_pixels)
    try:
        image = cv2.imdecode(np.frombuffer(raw, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:  # OpenCV raises (not returns None) e.g. when its own pixel limit is exceeded
        image = None
    if image is None:
        raise BadRequestError(
            f"field '{field}' is not a decodable image: its {fmt.upper()} header declares {width}x{height}, "
            f"but the data is corrupt or unsupported{_cv2_limit_note(width * height)}"
        )
    # The decoder may disagree with the header (EXIF rotation swaps the sides; a bug or a format
    # quirk could do worse): check what was actually produced, too.
    height, width = image.shape[:2]
    _check_dimensions(width, height, field, max_side, max_pixels)
    return image


def image_header_size(raw: bytes, *, field: str = "image") -> tuple[str, int, int]:
    """("jpeg" | "png", width, height) from the header alone; BadRequestError if it is not a
    complete JPEG/PNG header. Reads no pixel data and allocates nothing in proportion to the image."""
    if raw.startswith(PNG_MAGIC):
        width, height = _png_size(raw, field)
        fmt = "png"
    elif raw.startswith(JPEG_MAGIC):
        width, height = _jpeg_size(raw, field)
        fmt = "jpeg"
    else:
        raise BadRequestError(f"field '{field}' is not JPEG or PNG ({_describe_start(raw)})")
    if width == 0 or height == 0:
        raise BadRequestError(f"image in '{field}' declares {width}x{height} pixels (zero size)")
    return fmt, width, height


def _check_dimensions(width: int, height: int, field: str, max_side: int, max_pixels: int) -> None:
    if max(width, height) > max_side:
        raise BadRequestError(f"image in '{field}' is {width}x{height}; the largest side allowed is {max_side}")
    if width * height > max_pixels:
        raise BadRequestError(
            f"image in '{field}' is {width}x{height} = {width * height} pixels; at most {max_pixels} are allowed"
        )
    if width == 0 or height == 0:
        raise BadRequestError(f"image in '{field}' has zero size")


def _cv2_limit_note(pixels: int) -> str:
    """Why OpenCV may have refused a header we accepted: an operator set its limit below ours."""
    try:
        limit = int(os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS", ""))
    except ValueError:
        return ""
    return f" (OpenCV's OPENCV_IO_MAX_IMAGE_PIXELS is {limit})" if pixels > limit else ""


def _describe_start(raw: bytes) -> str:
    start = f"starts with {raw[:8].hex(' ')}"
    if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        return start + ": WebP"
    for magic, name in _OTHER_MAGIC:
        if raw.startswith(magic):
            return f"{start}: {name}"
    return start


def _png_size(raw: bytes, field: str) -> tuple[int, int]:
    # The PNG spec puts IHDR first: 4-byte length (13), "IHDR", width, height, 5 more bytes, CRC.
    if len(raw) < 33:
        raise BadRequestError(f"field '{field}' is a truncated PNG ({len(raw)} bytes, no complete IHDR chunk)")
    length, chunk_type = int.from_bytes(raw[8:12], "big"), raw[12:16]
    if chunk_type != b"IHDR" or length != 13:
        raise BadRequestError(f"field '{field}' is a PNG whose first chunk is not a 13-byte IHDR ({chunk_type!r})")
    if zlib.crc32(raw[12:29]) != int.from_bytes(raw[29:33], "big"):
        raise BadRequestError(f"field '{field}' is a PNG whose IHDR chunk fails its CRC check")
    return int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")


def _jpeg_size(raw: bytes, field: str) -> tuple[int, int]:
    """Walk the segments from SOI to the first frame header (SOFn) the way libjpeg does, over the
    whole buffer: the frame header may follow any amount of APPn/COM data."""
    n = len(raw)
    i = 2  # after SOI
    for _ in range(MAX_JPEG_SEGMENTS_BEFORE_FRAME):
        if i >= n:
            break
        if raw[i] != 0xFF:
            # libjpeg would skip such bytes looking for the next marker; refusing is simpler and
            # rules out reading a different frame header than the decoder will.
            raise BadRequestError(f"field '{field}' is a malformed JPEG (byte {i} is not a marker)")
        i = _FILL.match(raw, i).end()
        if i >= n:
            break
        marker = raw[i]
        i += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (0x00, 0xD8, 0xD9, 0xDA):  # stuffed byte, second SOI, EOI or scan data before a frame
            raise BadRequestError(
                f"field '{field}' is a malformed JPEG (marker 0x{marker:02X} before the frame header)"
            )
        if i + 2 > n:
            break
        length = int.from_bytes(raw[i : i + 2], "big")
        if length < 2:
            raise BadRequestError(f"field '{field}' is a malformed JPEG (segment 0x{marker:02X} of length {length})")
        if marker in _JPEG_SOF:
            if length < 8 or i + 7 > n:
                break
            height = int.from_bytes(raw[i + 3 : i + 5], "big")
            width = int.from_bytes(raw[i + 5 : i + 7], "big")
            return width, height
        i += length
    else:
        raise BadRequestError(
            f"field '{field}' is a JPEG with more than {MAX_JPEG_SEGMENTS_BEFORE_FRAME} segments before its frame header"
        )
    raise BadRequestError(f"field '{field}' is a truncated JPEG (no frame header with its size in {n} bytes)")


def encode_image_b64(image: np.ndarray, ext: str = ".jpg", quality: int = 90) -> str:
    """The inverse, for clients, tests and benchmarks."""
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, image, params)
    if not ok:
        raise ValueError(f"could not encode image as {ext}")
    return base64.b64encode(buf.tobytes()).decode("ascii")
