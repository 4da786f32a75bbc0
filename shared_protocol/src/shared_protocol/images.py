"""Image payload decoding for vision backends: base64 -> BGR uint8 ndarray, with clear errors.

Optional module: needs numpy and opencv-python-headless, which the core protocol does not.
"""

from __future__ import annotations

import base64
import binascii

import cv2
import numpy as np

from .errors import BadRequestError

DEFAULT_MAX_IMAGE_BYTES = 8 * 1024 * 1024  # decoded bytes of the compressed image
DEFAULT_MAX_SIDE = 4096  # pixels; larger frames are refused before any model work


def decode_image_b64(
    value: object,
    *,
    field: str = "image",
    max_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    max_side: int = DEFAULT_MAX_SIDE,
) -> np.ndarray:
    """Decode a base64 JPEG/PNG (optionally a `data:image/...;base64,` URL) to a BGR image."""
    if value is None:
        raise BadRequestError(f"missing field '{field}' (base64-encoded JPEG or PNG)")
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
    if len(raw) > max_bytes:
        raise BadRequestError(f"field '{field}' is larger than {max_bytes} bytes")
    buffer = np.frombuffer(raw, dtype=np.uint8)
    # Read the header first so a huge-but-small-file image (decompression bomb) is refused cheaply.
    header_ok, width, height = _peek_size(buffer)
    if header_ok and max(width, height) > max_side:
        raise BadRequestError(f"image in '{field}' is {width}x{height}; the largest side allowed is {max_side}")
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    if image is None:
        raise BadRequestError(f"field '{field}' is not a decodable image (JPEG or PNG expected)")
    height, width = image.shape[:2]
    if height == 0 or width == 0:
        raise BadRequestError(f"image in '{field}' has zero size")
    if max(width, height) > max_side:
        raise BadRequestError(f"image in '{field}' is {width}x{height}; the largest side allowed is {max_side}")
    return image


def _peek_size(buffer: np.ndarray) -> tuple[bool, int, int]:
    """Width and height from a PNG or JPEG header without decoding pixels."""
    data = buffer.tobytes()[:65536]
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return True, int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                i += 1
                continue
            marker = data[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            length = int.from_bytes(data[i + 2 : i + 4], "big")
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
                height = int.from_bytes(data[i + 5 : i + 7], "big")
                width = int.from_bytes(data[i + 7 : i + 9], "big")
                return True, width, height
            i += 2 + length
    return False, 0, 0


def encode_image_b64(image: np.ndarray, ext: str = ".jpg", quality: int = 90) -> str:
    """The inverse, for clients, tests and benchmarks."""
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, image, params)
    if not ok:
        raise ValueError(f"could not encode image as {ext}")
    return base64.b64encode(buf.tobytes()).decode("ascii")
