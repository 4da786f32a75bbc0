"""Sample request payloads for the emotion service (used by the generic container tests).

Needs only numpy, OpenCV and the standard library at import time. The valid frame is a real
smiling face: scikit-image's astronaut photo (public domain, NASA) on a 640x480 canvas; skimage
is imported only when valid_data() is called.
"""

from __future__ import annotations

import base64
import functools

import cv2
import numpy as np


@functools.cache
def astronaut_canvas_bgr() -> np.ndarray:
    """640x480 BGR frame: the astronaut photo scaled to 480x480 and centred (one face, ~90 px)."""
    from skimage import data  # test dependency (requirements-test.txt)

    face = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (480, 480), interpolation=cv2.INTER_AREA)
    canvas = np.full((480, 640, 3), 200, np.uint8)
    canvas[:, 80:560] = face
    return canvas


def jpeg_b64(image: np.ndarray, quality: int = 90) -> str:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return base64.b64encode(buf.tobytes()).decode("ascii")


def png_b64(image: np.ndarray) -> str:
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return base64.b64encode(buf.tobytes()).decode("ascii")


@functools.cache
def face_jpeg_b64() -> str:
    return jpeg_b64(astronaut_canvas_bgr())


def valid_data() -> dict:
    return {"image": face_jpeg_b64(), "timestamp": 1.0, "session_id": "samples"}


def bad_inputs() -> list[tuple[str, dict]]:
    tiny_png = png_b64(np.zeros((8, 8, 3), np.uint8))
    # 4097 x 1 PNG: small in bytes, one side over the default 4096-pixel limit.
    wide_png = png_b64(np.zeros((1, 4097, 3), np.uint8))
    # ~9 MiB of valid base64 (zeros): over the default 8 MiB decoded-size limit.
    oversize = base64.b64encode(bytes(9 * 1024 * 1024)).decode("ascii")
    return [
        ("missing image", {"timestamp": 1.0, "session_id": "s"}),
        ("image is null", {"image": None}),
        ("image not a string", {"image": 123, "timestamp": 1.0}),
        ("bad base64", {"image": "not base64 at all!!", "timestamp": 1.0}),
        ("empty image", {"image": "", "timestamp": 1.0}),
        ("data URL without payload separator", {"image": "data:image/png;base64"}),
        ("not an image", {"image": base64.b64encode(b"hello, not a picture").decode(), "timestamp": 1.0}),
        ("image over size limit", {"image": oversize, "timestamp": 1.0}),
        ("image side too large", {"image": wide_png, "timestamp": 1.0}),
        ("timestamp is a string", {"image": tiny_png, "timestamp": "1.0"}),
        ("timestamp is a bool", {"image": tiny_png, "timestamp": True}),
        ("session_id is a number", {"image": tiny_png, "timestamp": 1.0, "session_id": 42}),
        ("session_id empty", {"image": tiny_png, "timestamp": 1.0, "session_id": ""}),
        ("session_id too long", {"image": tiny_png, "timestamp": 1.0, "session_id": "s" * 129}),
        ("session_id with control characters", {"image": tiny_png, "session_id": "a\nb"}),
        ("reset_session not a bool", {"image": tiny_png, "timestamp": 1.0, "reset_session": "yes"}),
    ]
