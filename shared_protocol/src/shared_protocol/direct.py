"""Direct delivery: a complete data frame goes to the application from the connection's
`data_received`, in the event-loop step that read it.

The asyncio API of `websockets` puts every message in a receive queue (`Assembler`) and wakes the
task awaiting `recv()`: one more event-loop iteration per message before any work starts. A relay
pays it twice per request (client -> gateway, backend -> gateway) and the backend once. Here a
connection made with `create_connection=DirectServerConnection` (`serve`) or
`DirectClientConnection` (`connect`) hands each complete, unfragmented text or binary frame to
`on_message` as soon as the protocol has parsed it (bench/peers.py, six interleaved runs: conc-16
req/s median 1.13x, conc-1 p50 median 0.945x; docs/benchmarks.md).

`on_message(message) -> bool` must not block. True: the message is the application's now. False:
it could not be taken without waiting (e.g. the peer's write buffer is full); it goes to the queue,
where the application's `recv()` loop handles it and may wait, and the library's flow control
(pause reading above the queue's high-water mark) applies as before.

What stays the library's, through the queue and `recv()`:
- messages that arrive before `on_message` is set, and every message while any is still queued,
  so the application sees messages in the order they came;
- fragmented messages (the queue assembles them);
- a text frame that is not UTF-8: `recv()` fails the connection with 1007, as without this module;
- control frames, closing, limits (`max_size` is checked by the protocol while parsing).

`process_event` is the hook `websockets`' own connection classes override for the handshake; the
pinned version (17.4) is the one tests/protocol/test_direct.py checks this against.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.server import ServerConnection
from websockets.frames import CloseCode, Frame, Opcode

logger = logging.getLogger(__name__)

OnMessage = Callable[[str | bytes], bool]


class _DirectDelivery:
    """The part both connection classes share (a mixin before the library's class)."""

    on_message: OnMessage | None = None
    # Complete messages put in the library's queue, and taken out of it by recv(): while they
    # differ, later messages queue too, or they would overtake the queued ones.
    _queued = 0
    _taken = 0

    def process_event(self, event: Any) -> None:
        deliver = self.on_message
        if (
            deliver is not None
            and self._queued == self._taken
            and type(event) is Frame
            and event.fin
            and (event.opcode is Opcode.TEXT or event.opcode is Opcode.BINARY)
        ):
            message = _message(event)
            if message is not None:
                try:
                    if deliver(message):
                        return
                except Exception:  # a bug in the application: as an exception in a handler would
                    logger.exception("handling a message failed; closing the connection")
                    self.on_message = None
                    self._fail_internal()
                    return
        if type(event) is Frame and event.fin and event.opcode in _MESSAGE_END:
            self._queued += 1
        super().process_event(event)  # type: ignore[misc]

    async def recv(self, decode: bool | None = None) -> str | bytes:
        message = await super().recv(decode)  # type: ignore[misc]
        self._taken += 1
        return message

    def _fail_internal(self) -> None:
        self.protocol.fail(CloseCode.INTERNAL_ERROR, "internal error")  # type: ignore[attr-defined]
        self.send_data()  # type: ignore[attr-defined]


# The frames that complete a message in the queue (fin set): a whole text/binary frame, or the
# last fragment of a fragmented one.
_MESSAGE_END = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)


def _message(frame: Frame) -> str | bytes | None:
    """The frame's message as recv() would return it; None for text that is not UTF-8 (the queue's
    recv() fails the connection for it)."""
    data = bytes(frame.data)  # no copy when it is bytes already (the protocol's usual form)
    if frame.opcode is Opcode.TEXT:
        try:
            return data.decode()
        except UnicodeDecodeError:
            return None
    return data


class DirectServerConnection(_DirectDelivery, ServerConnection):
    """`serve(..., create_connection=DirectServerConnection)`; set `on_message` in the handler."""


class DirectClientConnection(_DirectDelivery, ClientConnection):
    """`connect(..., create_connection=DirectClientConnection)`; set `on_message` once connected."""
