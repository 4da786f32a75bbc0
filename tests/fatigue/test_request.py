"""Every input field's bad values raise BadRequestError naming the field (samples.py lists them)."""

import numpy as np
import pytest
from fatigue import samples

from shared_protocol.errors import BadRequestError
from shared_protocol.fields import RequestData
from vigil_fatigue.request import parse_request
from vigil_fatigue.settings import FatigueSettings

S = FatigueSettings()
FIELD_OF = {
    "missing image": "image",
    "image not a string": "image",
    "bad base64": "image",
    "empty image": "image",
    "not an image": "image",
    "image over size limit": "image",
    "image side too large": "image",
    "timestamp is a string": "timestamp",
    "timestamp is a bool": "timestamp",
    "session_id is a number": "session_id",
    "session_id empty": "session_id",
    "reset_session not a bool": "reset_session",
}
BAD = samples.bad_inputs()


def test_every_bad_input_has_a_field():
    assert {label for label, _ in BAD} == set(FIELD_OF)


@pytest.mark.parametrize(("label", "data"), BAD, ids=[label for label, _ in BAD])
def test_bad_input_names_the_field(label, data):
    with pytest.raises(BadRequestError, match=FIELD_OF[label]):
        parse_request(data, S)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_timestamp(value):
    with pytest.raises(BadRequestError, match="timestamp"):
        parse_request({"image": samples.valid_data()["image"], "timestamp": value}, S)


def test_data_must_be_an_object():
    with pytest.raises(BadRequestError, match="data"):
        parse_request([1, 2], S)


def test_valid_request_decodes_the_frame():
    req = parse_request(samples.valid_data(), S)
    assert req.session_id == "samples" and req.timestamp == 1.0 and not req.reset_session
    assert isinstance(req.frame, np.ndarray) and req.frame.shape == (480, 640, 3)


def test_defaults_and_data_url_prefix():
    image = samples.valid_data()["image"]
    req = parse_request({"image": "data:image/jpeg;base64," + image, "timestamp": 3}, S)
    assert req.session_id == "default" and req.timestamp == 3.0


def test_no_timestamp_and_null_session_id_are_valid():
    # The seed's own client sends only the image: the server's clock times such frames.
    req = parse_request({"image": samples.valid_data()["image"], "session_id": None}, S)
    assert req.timestamp is None and req.session_id == "default" and req.owner == "local"


def test_owner_comes_from_the_request_data_not_the_client():
    data = RequestData({**samples.valid_data(), "owner": "b"}, owner="a")
    req = parse_request(data, S)
    assert req.owner == "a" and req.session_key == ("a", "samples")


def test_reset_without_image_needs_no_timestamp():
    req = parse_request({"session_id": "s", "reset_session": True}, S)
    assert req.reset_session and req.frame is None and req.timestamp is None
