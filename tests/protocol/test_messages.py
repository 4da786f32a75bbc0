"""Validation of incoming frames: every malformed message becomes a precise BadRequestError."""

import json

import pytest

from shared_protocol import BadRequestError, ErrorCode, messages

ALLOWED = frozenset({messages.INFERENCE_REQUEST, messages.HEALTH_CHECK})


@pytest.mark.parametrize(
    ("frame", "expected", "request_id"),
    [
        ("not json", "not valid JSON", None),
        ("", "not valid JSON", None),
        ("[1, 2]", "must be a JSON object, got list", None),
        ('"text"', "must be a JSON object, got str", None),
        ("{}", "missing field 'type'", None),
        ('{"type": 5}', "missing field 'type'", None),
        ('{"type": "bogus", "request_id": "r1"}', "unknown message type 'bogus'", "r1"),
        ('{"type": "inference_request", "data": {}}', "missing field 'request_id'", None),
        ('{"type": "inference_request", "request_id": 7, "data": {}}', "must be a non-empty string, got int", None),
        ('{"type": "inference_request", "request_id": "", "data": {}}', "must be a non-empty string", None),
        ('{"type": "inference_request", "request_id": "r2"}', "missing field 'data'", "r2"),
        (
            '{"type": "inference_request", "request_id": "r3", "data": [1]}',
            "'data' must be a JSON object, got list",
            "r3",
        ),
        (
            '{"type": "inference_request", "request_id": "r4", "data": "x"}',
            "'data' must be a JSON object, got str",
            "r4",
        ),
        (b'{"type": "health_check"}', "binary frames need the 'vigil.msgpack' WebSocket subprotocol", None),
        ("[" * 100000, "not valid JSON", None),
    ],
)
def test_malformed_frames_raise_precise_errors(frame, expected, request_id):
    with pytest.raises(BadRequestError) as info:
        messages.parse_message(frame, ALLOWED)
    assert expected in info.value.message
    assert info.value.code is ErrorCode.BAD_REQUEST
    assert info.value.request_id == request_id


def test_overlong_request_id_is_refused():
    frame = json.dumps({"type": "inference_request", "request_id": "x" * 300, "data": {}})
    with pytest.raises(BadRequestError, match="longer than 256"):
        messages.parse_message(frame, ALLOWED)


def test_seed_messages_parse_and_keep_extra_fields():
    msg = messages.parse_message(
        json.dumps({"type": "inference_request", "request_id": "u1", "data": {"image": "abc"}, "model": "eeg"}),
        ALLOWED,
    )
    assert (msg.type, msg.request_id, msg.data) == ("inference_request", "u1", {"image": "abc"})
    assert msg.model == "eeg"
    assert messages.parse_message('{"type": "health_check"}', ALLOWED).request_id is None


def test_encode_matches_seed_shapes():
    assert json.loads(messages.encode(messages.error_message("r", ErrorCode.TIMEOUT, "late"))) == {
        "type": "error",
        "request_id": "r",
        "error": "late",
        "code": "timeout",
    }
    assert json.loads(messages.encode(messages.pong("healthy"))) == {"type": "pong", "status": "healthy"}
    with pytest.raises(ValueError):
        messages.encode({"x": float("nan")})
