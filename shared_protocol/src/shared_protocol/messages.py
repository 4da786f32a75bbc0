"""The seed's JSON messages: builders, encoding and strict validation of incoming frames.

Every malformed frame becomes a `ProtocolError` with a precise message; when the frame carried a
usable `request_id` the error carries it too, so the reply can be matched by the sender.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import BadRequestError, ErrorCode

INFERENCE_REQUEST = "inference_request"
INFERENCE_RESPONSE = "inference_response"
ERROR = "error"
HEALTH_CHECK = "health_check"
PONG = "pong"
# Main backend additions: one payload fanned out to every backend that can use it.
ANALYZE = "analyze"
ANALYZE_RESPONSE = "analyze_response"

MAX_REQUEST_ID_LENGTH = 256


@dataclass(slots=True)
class Message:
    """A validated incoming message. `raw` keeps every field, including unknown additive ones."""

    type: str
    request_id: str | None = None
    data: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    # The `data` value exactly as it appeared in the frame (JSON text), when known: a relay can
    # forward it without encoding it again (a 70 KB base64 image costs ~0.13 ms to re-encode).
    data_json: str | None = None


def encode(message: dict[str, Any]) -> str:
    # allow_nan=False: NaN is not JSON; a model emitting it is a bug we want to see loudly.
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def inference_request(request_id: str, data: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": INFERENCE_REQUEST, "request_id": request_id, "data": data, **extra}


def inference_response(request_id: str, data: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": INFERENCE_RESPONSE, "request_id": request_id, "data": data, **extra}


def error_message(request_id: str | None, code: ErrorCode | str, error: str) -> dict[str, Any]:
    code_value = code.value if isinstance(code, ErrorCode) else str(code)
    return {"type": ERROR, "request_id": request_id, "error": error, "code": code_value}


def health_check(request_id: str | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": HEALTH_CHECK}
    if request_id is not None:
        msg["request_id"] = request_id
    return msg


def pong(status: str, request_id: str | None = None, **info: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": PONG, "status": status, **info}
    if request_id is not None:
        msg["request_id"] = request_id
    return msg


def _decode_json(frame: str | bytes) -> Any:
    if isinstance(frame, (bytes, bytearray, memoryview)):
        raise BadRequestError("binary frames are not supported; send JSON text frames")
    try:
        return json.loads(frame)
    except json.JSONDecodeError as exc:
        raise BadRequestError(f"message is not valid JSON: {exc.msg} at position {exc.pos}") from None
    except RecursionError:
        raise BadRequestError("message is not valid JSON: nested too deeply") from None


def _request_id_of(obj: dict[str, Any], required: bool) -> str | None:
    if "request_id" not in obj or obj["request_id"] is None:
        if required:
            raise BadRequestError("missing field 'request_id' (a non-empty string)")
        return None
    request_id = obj["request_id"]
    if not isinstance(request_id, str) or not request_id:
        raise BadRequestError(f"field 'request_id' must be a non-empty string, got {type(request_id).__name__}")
    if len(request_id) > MAX_REQUEST_ID_LENGTH:
        raise BadRequestError(f"field 'request_id' is longer than {MAX_REQUEST_ID_LENGTH} characters")
    return request_id


def parse_message(frame: str | bytes, allowed_types: frozenset[str]) -> Message:
    """Validate one incoming frame. Raises `BadRequestError` (with `request_id` when known)."""
    return _validate(_decode_json(frame), allowed_types)


def parse_message_keeping_data_text(frame: str | bytes, allowed_types: frozenset[str]) -> Message:
    """`parse_message`, and also the raw JSON text of `data` in `Message.data_json` (for relays).

    Same results and errors as `parse_message`: anything the member scanner does not expect falls
    back to it.
    """
    scanned = _scan_object(frame) if isinstance(frame, str) else None
    if scanned is None:
        return parse_message(frame, allowed_types)
    obj, spans = scanned
    msg = _validate(obj, allowed_types)
    if msg.data is not None and "data" in spans:
        start, end = spans["data"]
        msg.data_json = frame[start:end]
    return msg


_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def _scan_object(text: str) -> tuple[dict[str, Any], dict[str, tuple[int, int]]] | None:
    """Decode a top-level JSON object member by member, noting where each value's text lies.

    Returns None (caller falls back to json.loads) for anything else: not an object, bad JSON,
    trailing text. Duplicate keys: the last wins, as in json.loads.
    """
    try:
        i = _WHITESPACE.match(text, 0).end()
        if text[i : i + 1] != "{":
            return None
        i = _WHITESPACE.match(text, i + 1).end()
        obj: dict[str, Any] = {}
        spans: dict[str, tuple[int, int]] = {}
        if text[i : i + 1] == "}":
            end = i + 1
        else:
            while True:
                if text[i : i + 1] != '"':
                    return None
                key, i = _DECODER.raw_decode(text, i)
                i = _WHITESPACE.match(text, i).end()
                if text[i : i + 1] != ":":
                    return None
                start = _WHITESPACE.match(text, i + 1).end()
                obj[key], i = _DECODER.raw_decode(text, start)
                spans[key] = (start, i)
                i = _WHITESPACE.match(text, i).end()
                separator = text[i : i + 1]
                i = _WHITESPACE.match(text, i + 1).end()
                if separator == "}":
                    end = i
                    break
                if separator != ",":
                    return None
        if end != len(text):
            return None
        return obj, spans
    except (ValueError, RecursionError):
        return None


def _validate(obj: Any, allowed_types: frozenset[str]) -> Message:
    if not isinstance(obj, dict):
        raise BadRequestError(f"message must be a JSON object, got {type(obj).__name__}")
    msg_type = obj.get("type")
    if not isinstance(msg_type, str):
        raise BadRequestError("missing field 'type' (a string)")
    # The request_id is read before the type is judged so that even an unknown type is answered
    # with the sender's id.
    try:
        request_id = _request_id_of(obj, required=False)
    except BadRequestError:
        request_id = None
        if msg_type in (INFERENCE_REQUEST, ANALYZE):
            raise
    if msg_type not in allowed_types:
        raise BadRequestError(
            f"unknown message type {msg_type!r}; expected one of {sorted(allowed_types)}",
            request_id=request_id,
        )
    if msg_type in (INFERENCE_REQUEST, ANALYZE):
        request_id = _request_id_of(obj, required=True)
        data = obj.get("data")
        if data is None:
            raise BadRequestError("missing field 'data' (a JSON object)", request_id=request_id)
        if not isinstance(data, dict):
            raise BadRequestError(
                f"field 'data' must be a JSON object, got {type(data).__name__}", request_id=request_id
            )
        return Message(msg_type, request_id, data, obj)
    return Message(msg_type, request_id, None, obj)


def parse_reply(frame: str | bytes) -> dict[str, Any]:
    """Parse a reply from a backend (client side). Raises `BadRequestError` if it is not a JSON object."""
    obj = _decode_json(frame)
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise BadRequestError("reply is not a JSON object with a string 'type'")
    return obj
