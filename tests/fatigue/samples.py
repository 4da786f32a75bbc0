"""Sample request payloads for the fatigue service (used by the generic container tests).

Needs only numpy, OpenCV and the standard library at import time. The valid frame is a real face:
scikit-image's astronaut photo (public domain, NASA) placed on a 640x480 canvas; skimage is only
imported when valid_data() is called, so this module imports where it is missing.
"""

from __future__ import annotations

import base64
import functools

import cv2
import numpy as np


@functools.cache
def face_jpeg_b64() -> str:
    """640x480 JPEG of the astronaut photo (face ~90 px wide, eyes open), base64."""
    from skimage import data  # test dependency (requirements-test.txt)

    face = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)[:480, :]  # 480x512, face in the upper half
    canvas = np.full((480, 640, 3), 200, np.uint8)
    canvas[:, 64:576] = face
    return _jpeg_b64(canvas)


def _jpeg_b64(image: np.ndarray) -> str:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return base64.b64encode(buf.tobytes()).decode("ascii")


def _png_b64(image: np.ndarray) -> str:
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return base64.b64encode(buf.tobytes()).decode("ascii")


def valid_data() -> dict:
    return {"image": face_jpeg_b64(), "timestamp": 1.0, "session_id": "samples"}


def bad_inputs() -> list[tuple[str, dict]]:
    tiny_png = _png_b64(np.zeros((8, 8, 3), np.uint8))
    # 4097 x 1 PNG: small in bytes, one side over the default 4096-pixel limit.
    wide_png = _png_b64(np.zeros((1, 4097, 3), np.uint8))
    # ~9 MiB of valid base64 (zeros): over the default 8 MiB decoded-size limit.
    oversize = base64.b64encode(bytes(9 * 1024 * 1024)).decode("ascii")
    return [
        ("missing image", {"timestamp": 1.0, "session_id": "s"}),
        ("image not a string", {"image": 123, "timestamp": 1.0}),
        ("bad base64", {"image": "not base64 at all!!", "timestamp": 1.0}),
        ("empty image", {"image": "", "timestamp": 1.0}),
        ("not an image", {"image": base64.b64encode(b"hello, not a picture").decode(), "timestamp": 1.0}),
        ("image over size limit", {"image": oversize, "timestamp": 1.0}),
        ("image side too large", {"image": wide_png, "timestamp": 1.0}),
        ("timestamp is a string", {"image": tiny_png, "timestamp": "1.0"}),
        ("timestamp is a bool", {"image": tiny_png, "timestamp": True}),
        ("session_id is a number", {"image": tiny_png, "timestamp": 1.0, "session_id": 42}),
        ("session_id empty", {"image": tiny_png, "timestamp": 1.0, "session_id": ""}),
        ("reset_session not a bool", {"image": tiny_png, "timestamp": 1.0, "reset_session": "yes"}),
    ]
