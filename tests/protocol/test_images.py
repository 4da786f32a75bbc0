"""base64 -> BGR decoding: every bad payload gets a clear BadRequestError."""

import base64
import zlib

import cv2
import numpy as np
import pytest

from shared_protocol import BadRequestError
from shared_protocol import images as images_module
from shared_protocol.images import decode_image_b64, encode_image_b64


def _image(w=64, h=48):
    img = np.zeros((h, w, 3), np.uint8)
    img[:, :, 2] = np.arange(w, dtype=np.uint8)[None, :]
    return img


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_roundtrip(ext):
    img = _image()
    decoded = decode_image_b64(encode_image_b64(img, ext))
    assert decoded.shape == img.shape
    assert np.abs(decoded.astype(int) - img.astype(int)).mean() < 3


def test_data_url_prefix_is_accepted():
    text = "data:image/png;base64," + encode_image_b64(_image(), ".png")
    assert decode_image_b64(text).shape == (48, 64, 3)


def _png_header_claiming(width, height):
    ok, buf = cv2.imencode(".png", _image(8, 8))
    raw = bytearray(buf.tobytes())
    raw[16:20] = width.to_bytes(4, "big")
    raw[20:24] = height.to_bytes(4, "big")
    raw[29:33] = zlib.crc32(bytes(raw[12:29])).to_bytes(4, "big")  # a forger fixes the CRC too
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(
    ("value", "kwargs", "expected"),
    [
        (None, {}, "missing field 'image'"),
        (123, {}, "must be a base64 string, got int"),
        (["a"], {}, "must be a base64 string, got list"),
        ("", {}, "is empty"),
        ("data:image/png;base64", {}, "without a ','"),
        ("@@@not-base64@@@", {}, "not valid base64"),
        ("abc", {}, "not valid base64"),
        (base64.b64encode(b"hello, not an image").decode(), {}, r"not JPEG or PNG \(starts with 68 65 6c 6c"),
        (base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 40).decode(), {}, "first chunk is not a 13-byte IHDR"),
        ("A" * 4000, {"max_bytes": 1000}, "larger than 1000 bytes"),
        (None, {"max_side": 32}, "largest side allowed is 32"),
        ("PNGBOMB", {}, "largest side allowed is 4096"),
    ],
)
def test_bad_payloads(value, kwargs, expected):
    if value is None and "max_side" in kwargs:
        value = encode_image_b64(_image(64, 48), ".png")
    if value == "PNGBOMB":
        value = _png_header_claiming(100000, 100000)
    with pytest.raises(BadRequestError, match=expected):
        decode_image_b64(value, **kwargs)


def test_opencv_errors_become_bad_requests(monkeypatch):
    def imdecode(buf, flags):
        raise cv2.error("OpenCV(4.x) loadsave.cpp: (-215:Assertion failed) pixels <= CV_IO_MAX_IMAGE_PIXELS")

    monkeypatch.setattr(images_module.cv2, "imdecode", imdecode)
    with pytest.raises(BadRequestError, match="not a decodable image: its PNG header declares 64x48"):
        decode_image_b64(encode_image_b64(_image(), ".png"))


def test_jpeg_header_size_is_checked_before_decoding():
    text = encode_image_b64(_image(640, 480), ".jpg")
    with pytest.raises(BadRequestError, match="640x480"):
        decode_image_b64(text, max_side=320)
