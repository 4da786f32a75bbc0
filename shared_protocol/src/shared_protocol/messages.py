"""The seed's JSON messages: builders, a strict codec and validation of incoming frames.

Decoding is msgspec's (C, strict JSON): NaN/Infinity, lone surrogates (`"\\ud800"`), invalid UTF-8
and bad syntax are refused. A frame is read in two steps:

1. `parse_envelope` reads `type`, `request_id`, `model`, `session_owner` and keeps `data` as the
   undecoded JSON text (`msgspec.Raw`): cheap enough for the event loop, and a relay can forward the
   text without decoding it.
2. `decode_data` materialises `data` (on a worker thread in the backends) and refuses nesting deeper
   than `MAX_NESTING` and integers beyond 64 bits.

Every malformed frame becomes a `BadRequestError` with a precise message; when the frame carried a
usable `request_id` the error carries it too, so the reply can be matched by the sender.
Encoding (`encode_bytes`) refuses NaN/Infinity, non-JSON types and unencodable text with an
exception, which the senders turn into an `internal` error reply (never a dropped connection).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import msgspec

from .batches import BATCH_SUBPROTOCOL
from .errors import BadRequestError, ErrorCode
from .limits import MAX_NESTING

INFERENCE_REQUEST = "inference_request"
INFERENCE_RESPONSE = "inference_response"
ERROR = "error"
HEALTH_CHECK = "health_check"
PONG = "pong"
# Main backend additions: one payload fanned out to every backend that can use it.
ANALYZE = "analyze"
ANALYZE_RESPONSE = "analyze_response"

MAX_REQUEST_ID_LENGTH = 256
# The binary form, negotiated per connection as a WebSocket subprotocol: the same messages as
# MessagePack in binary frames (images as raw bytes, EEG as raw float32). JSON stays the default.
BINARY_SUBPROTOCOL = "vigil.msgpack"
# The subprotocols under which binary frames are MessagePack (batch frames: shared_protocol.batches).
BINARY_SUBPROTOCOLS = frozenset({BINARY_SUBPROTOCOL, BATCH_SUBPROTOCOL})
JSON = "json"
MSGPACK = "msgpack"
# 64-bit integers, signed or unsigned; anything wider is no value a model input needs.
MIN_INTEGER = -(2**63)
MAX_INTEGER = 2**64 - 1

_REQUESTS_WITH_DATA = frozenset({INFERENCE_REQUEST, ANALYZE})


class _Envelope(msgspec.Struct):
    """The top-level members the servers read; unknown members are skipped without being built."""

    type: Any = None
    request_id: Any = None
    data: msgspec.Raw = msgspec.Raw()  # empty when absent
    model: Any = None
    session_owner: Any = None
    trace_id: Any = None


_ENVELOPE_DECODER = msgspec.json.Decoder(_Envelope)
_ANY_DECODER = msgspec.json.Decoder()
_MEMBERS_DECODER = msgspec.json.Decoder(dict[str, msgspec.Raw])
_MSGPACK_ENVELOPE_DECODER = msgspec.msgpack.Decoder(_Envelope)
_MSGPACK_ANY_DECODER = msgspec.msgpack.Decoder()
_MSGPACK_MEMBERS_DECODER = msgspec.msgpack.Decoder(dict[str, msgspec.Raw])
_MSGPACK_ENCODER = msgspec.msgpack.Encoder()
_JSON_ENCODER = msgspec.json.Encoder()
# First byte of a MessagePack map (fixmap, map16, map32) and of nil.
_MSGPACK_MAP_STARTS = frozenset(range(0x80, 0x90)) | {0xDE, 0xDF}
_MSGPACK_NIL = 0xC0


@dataclass(slots=True)
class Message:
    """A validated incoming message.

    `data_raw` is the `data` member's JSON text, undecoded; `data` is the decoded object once
    `decode_data` ran (`parse_message` does both).
    """

    type: str
    request_id: str | None = None
    data: dict[str, Any] | None = None
    data_raw: msgspec.Raw | None = None
    model: Any = None
    session_owner: Any = None
    trace_id: str | None = None  # a valid trace id from the frame, else None
    size: int = 0  # bytes of the frame
    codec: str = JSON  # the frame's form (MSGPACK: a binary frame on a vigil.msgpack connection)


# ---- building and encoding ---------------------------------------------------------------------


def encode_bytes(message: dict[str, Any]) -> bytes:
    """Strict UTF-8 JSON. Raises ValueError (NaN/Infinity, unencodable text) or TypeError."""
    # msgspec refuses lone surrogates (UnicodeEncodeError) but writes NaN/Infinity as null, so a
    # frame with any null is encoded again by the stdlib with allow_nan=False: NaN is not JSON,
    # and a model emitting it is a bug we want to see loudly, not a silent null.
    out = _JSON_ENCODER.encode(message)
    if b"null" in out:
        return json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
    return out


def encode(message: dict[str, Any]) -> str:
    return encode_bytes(message).decode("utf-8")


def encode_msgpack(message: dict[str, Any]) -> bytes:
    """The binary form. Raises TypeError for values MessagePack cannot carry."""
    return _MSGPACK_ENCODER.encode(message)


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


# ---- decoding ----------------------------------------------------------------------------------


def parse_envelope(frame: str | bytes, allowed_types: frozenset[str], *, binary: bool = False) -> Message:
    """Validate one incoming frame without decoding `data`. Raises BadRequestError.

    Text frames are JSON; binary frames are MessagePack, accepted only when `binary` (the connection
    negotiated BINARY_SUBPROTOCOL)."""
    if not isinstance(frame, str):
        if not binary:
            raise BadRequestError(
                f"binary frames need the {BINARY_SUBPROTOCOL!r} WebSocket subprotocol; send JSON text frames "
                "or negotiate it"
            )
        return _parse_msgpack_envelope(frame, allowed_types)
    try:
        envelope = _ENVELOPE_DECODER.decode(frame)
    except msgspec.ValidationError:
        # Not an object (msgspec stops at the first byte): say what it is, or why it is not JSON.
        raise BadRequestError(_not_an_object(frame), request_id=recover_request_id(frame)) from None
    except (msgspec.DecodeError, UnicodeError) as exc:
        raise BadRequestError(_not_json(exc, frame), request_id=recover_request_id(frame)) from None
    except RecursionError:
        raise BadRequestError(
            f"message is not valid JSON: nested deeper than {MAX_NESTING} levels",
            request_id=recover_request_id(frame),
        ) from None
    msg = _validate(envelope, allowed_types)
    msg.size = len(frame)
    return msg


def _parse_msgpack_envelope(frame: bytes, allowed_types: frozenset[str]) -> Message:
    try:
        envelope = _MSGPACK_ENVELOPE_DECODER.decode(frame)
    except msgspec.ValidationError as exc:
        raise BadRequestError(f"message must be a MessagePack map: {exc}") from None
    except (msgspec.DecodeError, UnicodeError) as exc:
        raise BadRequestError(f"message is not valid MessagePack: {exc}") from None
    except RecursionError:
        raise BadRequestError(f"message is not valid MessagePack: nested deeper than {MAX_NESTING} levels") from None
    msg = _validate(envelope, allowed_types, codec=MSGPACK)
    msg.size = len(frame)
    return msg


def parse_message(frame: str | bytes, allowed_types: frozenset[str]) -> Message:
    """`parse_envelope` plus `decode_data`: the whole message, validated."""
    msg = parse_envelope(frame, allowed_types)
    if msg.data_raw is not None:
        msg.data = decode_data(msg.data_raw, request_id=msg.request_id)
    return msg


def decode_data(raw: msgspec.Raw | bytes | str, *, request_id: str | None = None, codec: str = JSON) -> dict[str, Any]:
    """Materialise a request's `data` (already known to be an object/map), within MAX_NESTING
    levels and 64-bit integers."""
    if codec == MSGPACK:
        try:
            data = _MSGPACK_ANY_DECODER.decode(raw)
        except (msgspec.DecodeError, UnicodeError) as exc:
            raise BadRequestError(f"'data' is not valid MessagePack: {exc}", request_id=request_id) from None
        except RecursionError:
            raise BadRequestError(f"'data' is nested deeper than {MAX_NESTING} levels", request_id=request_id) from None
        # MessagePack has no integers beyond 64 bits; its binary payloads are single values.
        check_values(data, (True, False), request_id=request_id)
        return data
    try:
        data = _ANY_DECODER.decode(raw)
    except (msgspec.DecodeError, UnicodeError) as exc:
        raise BadRequestError(_not_json(exc, raw), request_id=request_id) from None
    except RecursionError:
        raise BadRequestError(f"'data' is nested deeper than {MAX_NESTING} levels", request_id=request_id) from None
    check_values(data, _needs_check(raw), request_id=request_id)
    return data


def decode_members(raw: msgspec.Raw | bytes | str, codec: str = JSON) -> dict[str, msgspec.Raw]:
    """An object's members, each still undecoded (the gateway splits `analyze` data with it)."""
    return (_MSGPACK_MEMBERS_DECODER if codec == MSGPACK else _MEMBERS_DECODER).decode(raw)


def encode_members(members: dict[str, Any], codec: str = JSON) -> bytes:
    """An object from members that may be undecoded (msgspec.Raw of the same codec)."""
    return _MSGPACK_ENCODER.encode(members) if codec == MSGPACK else _JSON_ENCODER.encode(members)


def decode_value(raw: msgspec.Raw | bytes, codec: str = JSON) -> Any:
    """One small member's value (session_id, ...). Raises msgspec.DecodeError."""
    return (_MSGPACK_ANY_DECODER if codec == MSGPACK else _ANY_DECODER).decode(raw)


def raw_value(value: Any, codec: str = JSON) -> msgspec.Raw:
    """A value as an undecoded member, to splice into relayed data."""
    return msgspec.Raw(_MSGPACK_ENCODER.encode(value) if codec == MSGPACK else _JSON_ENCODER.encode(value))


def is_null(raw: msgspec.Raw, codec: str = JSON) -> bool:
    first = memoryview(raw)[:1].tobytes()
    return first == (bytes([_MSGPACK_NIL]) if codec == MSGPACK else b"n")


class ReplyEnvelope(msgspec.Struct):
    """A backend's reply as the main backend reads it: `data` stays undecoded (it may be relayed
    as it came); the rest are small members."""

    type: Any = None
    request_id: Any = None
    data: msgspec.Raw = msgspec.Raw()
    code: Any = None
    error: Any = None
    timing: Any = None
    model_version: Any = None


_REPLY_DECODER = msgspec.json.Decoder(ReplyEnvelope)
_MSGPACK_REPLY_DECODER = msgspec.msgpack.Decoder(ReplyEnvelope)


def parse_reply_envelope(frame: str | bytes) -> ReplyEnvelope:
    """Client side: a backend reply without decoding its `data`. Raises BadRequestError."""
    try:
        reply = _REPLY_DECODER.decode(frame) if isinstance(frame, str) else _MSGPACK_REPLY_DECODER.decode(frame)
    except (msgspec.DecodeError, UnicodeError, RecursionError) as exc:
        raise BadRequestError(f"reply is not a valid message: {exc}") from None
    if not isinstance(reply.type, str):
        raise BadRequestError("reply has no string 'type'")
    return reply


def parse_reply(frame: str | bytes) -> dict[str, Any]:
    """Parse a reply from a backend (client side): JSON text or MessagePack binary. Raises
    `BadRequestError` if it is not an object with a string 'type'."""
    try:
        obj = _ANY_DECODER.decode(frame) if isinstance(frame, str) else _MSGPACK_ANY_DECODER.decode(frame)
    except (msgspec.DecodeError, UnicodeError, RecursionError) as exc:
        raise BadRequestError(f"reply is not valid JSON: {exc}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise BadRequestError("reply is not a JSON object with a string 'type'")
    return obj


# ---- helpers -----------------------------------------------------------------------------------

# A run of 19 digits may already be beyond 64 bits; shorter runs never are. Found by mapping every
# digit to "0" and looking for 19 zeros: 1 us per KB, where a regex took 15.
_DIGITS_TO_ZERO = bytes.maketrans(b"0123456789", b"0" * 10)
_LONG_DIGIT_RUN = b"0" * 19
_REQUEST_ID_MEMBER = re.compile(r'"request_id"\s*:\s*("(?:[^"\\]|\\.){1,%d}")' % (MAX_REQUEST_ID_LENGTH * 6))  # noqa: UP031


def _needs_check(raw: msgspec.Raw | bytes | str) -> tuple[bool, bool]:
    """(depth may exceed MAX_NESTING, an integer may exceed 64 bits): cheap scans of the text, so
    the walk over decoded values runs only for the frames that could fail it."""
    buf = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
    deep = buf.count(b"[") + buf.count(b"{") > MAX_NESTING
    return deep, _has_long_digit_run(buf)


def _has_long_digit_run(buf: bytes, window: int = 1 << 20) -> bool:
    if len(buf) <= window:  # the common case, one window: no generator per request
        return _LONG_DIGIT_RUN in buf.translate(_DIGITS_TO_ZERO)
    # Window by window (overlapping by a run's length), so the translated copy stays small.
    overlap = len(_LONG_DIGIT_RUN) - 1
    return any(
        _LONG_DIGIT_RUN in buf[start : start + window + overlap].translate(_DIGITS_TO_ZERO)
        for start in range(0, len(buf), window)
    )


def check_values(data: Any, checks: tuple[bool, bool] = (True, True), *, request_id: str | None = None) -> None:
    check_depth, check_ints = checks
    if not (check_depth or check_ints):
        return
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if check_depth and depth > MAX_NESTING:
            raise BadRequestError(f"'data' is nested deeper than {MAX_NESTING} levels", request_id=request_id)
        children = value.values() if isinstance(value, dict) else value
        for child in children:
            kind = type(child)
            if kind is list or kind is dict:
                stack.append((child, depth + 1))
            elif check_ints and kind is int and not MIN_INTEGER <= child <= MAX_INTEGER:
                raise BadRequestError(
                    f"'data' holds an integer beyond 64 bits ({len(str(abs(child)))} digits)", request_id=request_id
                )


def recover_request_id(frame: str | bytes) -> str | None:
    """The request_id of a frame that failed to parse, when one can be read safely (so the client
    can match the error to its request)."""
    if not isinstance(frame, str):
        return None
    match = _REQUEST_ID_MEMBER.search(frame)
    if match is None:
        return None
    try:
        value = json.loads(match.group(1))
        value.encode("utf-8")  # no lone surrogates: the reply must stay encodable
    except (ValueError, UnicodeError):
        return None
    return value if 0 < len(value) <= MAX_REQUEST_ID_LENGTH else None


_BYTE_POSITION = re.compile(r"\(byte (\d+)\)")


def _not_json(exc: Exception, text: str | bytes | msgspec.Raw | None = None) -> str:
    reason = str(exc)
    if "Integer value out of range" in reason:
        return f"message holds an integer beyond 64 bits ({reason})"
    if "Number out of range" in reason:
        return f"message holds a number beyond the range of a 64-bit float ({reason})"
    if any(hint in reason for hint in ("truncated", "hex escape", "surrogate")):
        # msgspec reports a lone surrogate escape in these words.
        reason += " (a \\ud800-\\udfff escape that is not part of a surrogate pair is not text)"
    position = _BYTE_POSITION.search(reason)
    if position is not None and text is not None:
        # Show where (NaN, Infinity, a stray comma...): the client can find it in its own payload.
        at = int(position.group(1))
        buf = text.encode("utf-8", "replace") if isinstance(text, str) else bytes(memoryview(text)[at : at + 24])
        snippet = buf[at : at + 24] if isinstance(text, str) else buf
        reason += f" near {snippet.decode('utf-8', 'replace')!r}"
    return f"message is not valid JSON: {reason}"


def _not_an_object(frame: str) -> str:
    try:
        return f"message must be a JSON object, got {type(_ANY_DECODER.decode(frame)).__name__}"
    except (msgspec.DecodeError, UnicodeError) as exc:
        return _not_json(exc, frame)
    except RecursionError:
        return f"message is not valid JSON: nested deeper than {MAX_NESTING} levels"


def _request_id_of(value: Any, required: bool) -> str | None:
    if value is None:
        if required:
            raise BadRequestError("missing field 'request_id' (a non-empty string)")
        return None
    if not isinstance(value, str) or not value:
        raise BadRequestError(f"field 'request_id' must be a non-empty string, got {type(value).__name__}")
    if len(value) > MAX_REQUEST_ID_LENGTH:
        raise BadRequestError(f"field 'request_id' is longer than {MAX_REQUEST_ID_LENGTH} characters")
    return value


def _validate(envelope: _Envelope, allowed_types: frozenset[str], codec: str = JSON) -> Message:
    msg_type = envelope.type
    if not isinstance(msg_type, str):
        raise BadRequestError("missing field 'type' (a string)", request_id=_safe_request_id(envelope.request_id))
    # The request_id is read before the type is judged so that even an unknown type is answered
    # with the sender's id.
    if msg_type not in allowed_types:
        raise BadRequestError(
            f"unknown message type {msg_type[:64]!r}; expected one of {sorted(allowed_types)}",
            request_id=_safe_request_id(envelope.request_id),
        )
    if msg_type not in _REQUESTS_WITH_DATA:
        return Message(msg_type, _safe_request_id(envelope.request_id), codec=codec)
    request_id = _request_id_of(envelope.request_id, required=True)
    raw = envelope.data
    if codec == MSGPACK:
        first_byte = memoryview(raw)[:1].tobytes()
        if first_byte in (b"", bytes([_MSGPACK_NIL])):
            raise BadRequestError("missing field 'data' (a map)", request_id=request_id)
        if first_byte[0] not in _MSGPACK_MAP_STARTS:
            raise BadRequestError("field 'data' must be a map", request_id=request_id)
    else:
        first = memoryview(raw)[:1].tobytes()
        if first in (b"", b"n"):  # absent or null
            raise BadRequestError("missing field 'data' (a JSON object)", request_id=request_id)
        if first != b"{":
            kind = type(_ANY_DECODER.decode(raw)).__name__
            raise BadRequestError(f"field 'data' must be a JSON object, got {kind}", request_id=request_id)
    return Message(
        msg_type,
        request_id,
        data_raw=raw,
        model=envelope.model,
        session_owner=envelope.session_owner,
        trace_id=envelope.trace_id if valid_trace_id(envelope.trace_id) else None,
        codec=codec,
    )


MAX_TRACE_ID_LENGTH = 64


def valid_trace_id(value: Any) -> bool:
    """A trace id a client may choose: 1-64 printable ASCII characters without spaces."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_TRACE_ID_LENGTH
        and value.isascii()
        and value.isprintable()
        and " " not in value
    )


def _safe_request_id(value: Any) -> str | None:
    try:
        return _request_id_of(value, required=False)
    except BadRequestError:
        return None
