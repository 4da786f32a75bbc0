"""Batch frames: several messages in one WebSocket frame, on connections that negotiated them.

Every WebSocket frame costs each side a few microseconds of `websockets` framing (header, mask,
parse, one event per frame) whatever it carries. The gateway multiplexes every client on one
connection per backend replica, so under load it sends a backend many small requests per
event-loop turn and gets many small replies back: framing them one by one was a fifth of the
relay's CPU (docs/benchmarks.md). On a connection that negotiated `BATCH_SUBPROTOCOL`, the frames
one side queues in one turn may leave as one batch frame (`shared_protocol.outbox` builds them).

The form (an addition: the seed's JSON frames and `vigil.msgpack` are unchanged):
- `BATCH_SUBPROTOCOL` ("vigil.msgpack.batch") means everything `vigil.msgpack` means, plus: a
  binary frame may be a MessagePack *array* of messages instead of one message (a map). Each
  element is a message in the binary form (a map) or a message in JSON text (a string). The
  elements are read in order, each exactly as if it had come in a frame of its own: its own
  admission, its own reply.
- A batch frame holds at most `MAX_BATCH_MESSAGES` messages and `MAX_BATCH_BYTES` bytes. A side
  offers or selects the subprotocol only when it accepts frames of that size, so a batch never
  trips the receiver's `max_size`. Larger messages travel alone.
- A batch that breaks these rules gets one `error` reply (request_id null) and nothing of it is
  admitted; an element that is no message gets the error a frame with it would get.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from .errors import BadRequestError

BATCH_SUBPROTOCOL = "vigil.msgpack.batch"
MAX_BATCH_MESSAGES = 64
MAX_BATCH_BYTES = 64 * 1024

# First bytes of a MessagePack array (fixarray, array 16, array 32), and of a string.
_ARRAY_STARTS = frozenset(range(0x90, 0xA0)) | {0xDC, 0xDD}
_STR_STARTS = frozenset(range(0xA0, 0xC0)) | {0xD9, 0xDA, 0xDB}
_RAWS_DECODER = msgspec.msgpack.Decoder(list[msgspec.Raw])
_STR_DECODER = msgspec.msgpack.Decoder(str)
# Per element: a str header (at most 5 bytes); per frame: an array header (at most 3 bytes here).
_ELEMENT_OVERHEAD = 5
_FRAME_OVERHEAD = 3


def takes_batches(max_message_size: int | None) -> bool:
    """Whether a side with this frame size limit (None: none) may negotiate batch frames."""
    return max_message_size is None or max_message_size >= MAX_BATCH_BYTES


def is_batch(frame: str | bytes) -> bool:
    """Whether a frame from a batch connection is a batch (a binary MessagePack array)."""
    return type(frame) is bytes and len(frame) > 0 and frame[0] in _ARRAY_STARTS


def split_batch(frame: bytes) -> list[str | bytes]:
    """The messages of a batch frame, each as `recv()` would return its own frame (str: JSON text;
    bytes: the binary form). Raises BadRequestError for a batch that breaks the rules, before
    building anything when the count or the size is too large."""
    if len(frame) > MAX_BATCH_BYTES:
        raise BadRequestError(f"a batch frame carries at most {MAX_BATCH_BYTES} bytes; this one has {len(frame)}")
    count = _array_length(frame)
    if count > MAX_BATCH_MESSAGES:
        raise BadRequestError(f"a batch frame carries at most {MAX_BATCH_MESSAGES} messages; this one says {count}")
    try:
        elements = _RAWS_DECODER.decode(frame)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise BadRequestError(f"batch frame is not valid MessagePack: {exc}") from None
    if not elements:
        raise BadRequestError("a batch frame carries at least one message")
    return [_message(element) for element in elements]


def _array_length(frame: bytes) -> int:
    first = frame[0]
    if first == 0xDC:
        return int.from_bytes(frame[1:3], "big")
    if first == 0xDD:
        return int.from_bytes(frame[1:5], "big")
    return first & 0x0F


def _message(element: msgspec.Raw) -> str | bytes:
    data = bytes(element)
    if data[0] in _STR_STARTS:
        try:
            return _STR_DECODER.decode(data)  # JSON text: a str, as a text frame would give
        except (msgspec.DecodeError, UnicodeDecodeError):  # not UTF-8: the binary parser says what is wrong
            return data
    # A map is a message in the binary form; anything else is refused by the binary parser with
    # the error a frame holding it would get ("message must be a MessagePack map").
    return data


def encode_batch(messages: Iterable[tuple[bytes, bool]]) -> bytes:
    """One batch frame's payload from (message, is_text) pairs; the caller keeps within
    `MAX_BATCH_MESSAGES` and `MAX_BATCH_BYTES` (`fits`)."""
    items = list(messages)
    parts = [_array_header(len(items))]
    for message, text in items:
        if text:
            parts.append(_str_header(len(message)))
        parts.append(message)
    return b"".join(parts)


def batch_size(messages: int, message_bytes: int) -> int:
    """An upper bound of the bytes a batch of `messages` messages of `message_bytes` bytes in all
    takes (the outbox decides with it whether one more fits)."""
    return _FRAME_OVERHEAD + messages * _ELEMENT_OVERHEAD + message_bytes


def _array_header(count: int) -> bytes:
    if count < 16:
        return bytes((0x90 | count,))
    return b"\xdc" + count.to_bytes(2, "big")


def _str_header(length: int) -> bytes:
    if length < 32:
        return bytes((0xA0 | length,))
    if length < 0x100:
        return b"\xd9" + bytes((length,))
    if length < 0x10000:
        return b"\xda" + length.to_bytes(2, "big")
    return b"\xdb" + length.to_bytes(4, "big")
