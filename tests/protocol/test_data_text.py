"""parse_message_keeping_data_text: same results and errors as parse_message, plus the exact text
of `data` for verbatim relaying."""

import json

import pytest

from shared_protocol import BadRequestError, messages

ALLOWED = frozenset({messages.INFERENCE_REQUEST, messages.ANALYZE, messages.HEALTH_CHECK})

FRAMES = [
    '{"type":"inference_request","request_id":"r1","data":{"image":"abc","timestamp":1.5}}',
    ' \n{ "type" : "inference_request" ,\t"request_id":"r2", "data" : { "a" : [1, 2, {"b": null}] } } \n',
    '{"data":{"request_id":"inner","x":"}{\\"\\u00e9"},"type":"inference_request","request_id":"r3","model":"eeg"}',
    '{"type":"inference_request","request_id":"r4","data":{"v":1},"data":{"v":2}}',  # last wins
    '{"type":"analyze","request_id":"r5","data":{"eeg":{"data":[[1e-6,-2.5E3]]},"session_id":"s"}}',
    '{"type":"inference_request","request_id":"r6","data":{"x":NaN}}',
    '{"type":"health_check"}',
    "{}",
    '{"type":"inference_request","request_id":"r7","data":{}} trailing',
    '{"type":"inference_request","request_id":"r8","data":{}',
    '{"type":"inference_request","request_id":"r9","data":[1]}',
    '{"type":"inference_request","request_id":"r10"}',
    '{"type":"inference_request","request_id":5,"data":{}}',
    '{"type":"bogus","request_id":"r11"}',
    '{"type" "inference_request"}',
    '{type:"inference_request"}',
    "[1, 2]",
    "not json",
    '"just a string"',
    "",
]


def _outcome(parse, frame):
    try:
        msg = parse(frame, ALLOWED)
    except BadRequestError as exc:
        return ("error", exc.message, exc.request_id)
    return ("ok", msg.type, msg.request_id, json.dumps(msg.data, sort_keys=True), json.dumps(msg.raw, sort_keys=True))


@pytest.mark.parametrize("frame", FRAMES)
def test_same_outcome_as_parse_message(frame):
    assert _outcome(messages.parse_message_keeping_data_text, frame) == _outcome(messages.parse_message, frame)


@pytest.mark.parametrize("frame", [f for f in FRAMES if _outcome(messages.parse_message, f)[0] == "ok"])
def test_data_text_decodes_to_data(frame):
    msg = messages.parse_message_keeping_data_text(frame, ALLOWED)
    if msg.data is None:
        assert msg.data_json is None
    else:
        assert msg.data_json is not None
        assert json.dumps(json.loads(msg.data_json), sort_keys=True) == json.dumps(msg.data, sort_keys=True)


def test_data_text_is_the_verbatim_slice():
    data_text = '{ "image" : "QUJD" , "nested": {"request_id": "x"} }'
    frame = '{"type":"inference_request","request_id":"r","data":' + data_text + "}"
    assert messages.parse_message_keeping_data_text(frame, ALLOWED).data_json == data_text


def test_binary_frames_are_refused_as_before():
    with pytest.raises(BadRequestError, match="binary"):
        messages.parse_message_keeping_data_text(b'{"type":"health_check"}', ALLOWED)
