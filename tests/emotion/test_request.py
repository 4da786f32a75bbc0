"""Every input field's validation: bad values are BadRequestError naming the field."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shared_protocol.errors import BadRequestError
from shared_protocol.fields import RequestData
from vigil_emotion.request import parse_request
from vigil_emotion.settings import EmotionSettings

from .samples import bad_inputs, png_b64

SETTINGS = EmotionSettings(device="cpu")
TINY = png_b64(np.zeros((8, 8, 3), np.uint8))


def _expected_field(label: str) -> str:
    for field in ("timestamp", "session_id", "reset_session"):
        if field in label:
            return field
    return "image"  # every other sample is about the image


@pytest.mark.parametrize(("label", "data"), bad_inputs(), ids=[label for label, _ in bad_inputs()])
def test_sample_bad_inputs_are_bad_requests_naming_the_field(label, data):
    with pytest.raises(BadRequestError) as info:
        parse_request(data, SETTINGS)
    assert f"'{_expected_field(label)}'" in info.value.message, (label, info.value.message)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"image": TINY, "timestamp": math.nan}, "timestamp"),
        ({"image": TINY, "timestamp": math.inf}, "timestamp"),
        ({"image": TINY, "timestamp": [1]}, "timestamp"),
        ({"image": TINY, "reset_session": 1}, "reset_session"),
        ({"image": TINY, "session_id": ["a"]}, "session_id"),
        ({"image": [TINY]}, "image"),
    ],
)
def test_more_bad_values(data, field):
    with pytest.raises(BadRequestError, match=field):
        parse_request(data, SETTINGS)


def test_data_must_be_an_object():
    with pytest.raises(BadRequestError, match="'data'"):
        parse_request(["image"], SETTINGS)


def test_limits_come_from_settings():
    small = EmotionSettings(device="cpu", max_image_side=4)
    with pytest.raises(BadRequestError, match="largest side"):
        parse_request({"image": TINY}, small)
    with pytest.raises(BadRequestError, match="larger than 10 bytes"):
        parse_request({"image": TINY}, EmotionSettings(device="cpu", max_image_bytes=10))


def test_session_id_follows_the_shared_rule():
    # 128 characters is the longest id of every service (shared_protocol.fields), not a setting.
    assert parse_request({"image": TINY, "session_id": "s" * 128}, SETTINGS).session_id == "s" * 128
    with pytest.raises(BadRequestError, match="longer than 128"):
        parse_request({"image": TINY, "session_id": "s" * 129}, SETTINGS)
    with pytest.raises(BadRequestError, match="'session_id'"):
        parse_request({"image": TINY, "session_id": "\x00"}, SETTINGS)


def test_owner_comes_from_the_server_not_the_client():
    local = parse_request({"image": TINY, "session_id": "cam", "owner": "b"}, SETTINGS)
    assert local.owner == "local" and local.session_key == ("local", "cam")
    relayed = parse_request(RequestData({"image": TINY, "session_id": "cam"}, owner="conn-7"), SETTINGS)
    assert relayed.session_key == ("conn-7", "cam") and relayed.session_id == "cam"


def test_defaults_and_valid_values():
    request = parse_request({"image": "data:image/png;base64," + TINY}, SETTINGS)
    assert request.session_id == "default" and request.timestamp is None and request.reset_session is False
    assert request.image.shape == (8, 8, 3)
    request = parse_request({"image": TINY, "session_id": "cam-1", "timestamp": 3, "reset_session": True}, SETTINGS)
    assert (request.session_id, request.timestamp, request.reset_session) == ("cam-1", 3.0, True)
    assert parse_request({"image": TINY, "session_id": None}, SETTINGS).session_id == "default"
