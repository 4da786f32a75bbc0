"""Coalesced sends: the frames queued on one connection during one event-loop turn leave in one
socket write.

`websockets`' `Connection.send` writes every frame as it is sent: one `transport.write` (one
syscall) plus an async context manager per frame. A relay sends many small frames on one shared
connection per turn (the gateway to a backend, a backend's replies to the gateway), so that cost
was the largest single item in both profiles (bench/peers.py --profile). Here a frame is framed by
the connection's own sans-I/O protocol object (`Connection.protocol`, the documented layer under
the asyncio API) at once, in order, and the bytes are flushed once at the end of the turn.

Waiting for the end of the turn costs a lone frame one event-loop iteration of latency. So a
connection whose last turn sent a single frame (one request in flight: the common case at low load)
writes the next turn's first frame at once; a connection whose last turn had company coalesces.
bench/peers.py, six interleaved runs: conc-1 p50 median 0.955x, conc-16 CPU per request unchanged.

On a connection that negotiated batch frames (`shared_protocol.batches`), the messages that wait
for the end of the turn are not framed one by one: they leave as batch frames (up to
MAX_BATCH_MESSAGES messages and MAX_BATCH_BYTES bytes each), a lone one as a plain frame.

Flow control is the library's: when the transport's write buffer is above its high-water mark (a
slow reader), or the connection is not open, the frame takes `Connection.send`, which waits for
the buffer to drain or raises `ConnectionClosed`. Frames sent either way keep their order: both
append to the same protocol buffer (held messages are framed first), and `Connection.send`
flushes what is queued before its own.
"""

from __future__ import annotations

import asyncio
import logging

from websockets.asyncio.connection import Connection
from websockets.exceptions import ProtocolError
from websockets.protocol import OPEN

from .batches import BATCH_SUBPROTOCOL, MAX_BATCH_BYTES, MAX_BATCH_MESSAGES, batch_size, encode_batch

logger = logging.getLogger(__name__)

_ATTRIBUTE = "_vigil_outbox"
# The largest message that fits a batch frame on its own (larger ones travel alone, framed at once).
_MAX_HELD_BYTES = MAX_BATCH_BYTES - batch_size(1, 0)


class _Turns:
    """Event-loop turns, counted for every outbox of one loop: one `call_soon` per turn in all,
    instead of one per connection that sent (a gateway answers many clients per turn, each reply
    written at once: the per-connection end-of-turn callback was most of what a reply cost here)."""

    __slots__ = ("_loop", "number", "_marked")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.number = 0
        self._marked = False  # the end of the current turn is scheduled

    def current(self) -> int:
        """This turn's number (the next turn has another)."""
        if not self._marked:
            self._marked = True
            self._loop.call_soon(self._end)
        return self.number

    def _end(self) -> None:
        self.number += 1
        self._marked = False


def _turns_of(loop: asyncio.AbstractEventLoop) -> _Turns:
    turns = getattr(loop, "_vigil_turns", None)
    if turns is None:
        turns = _Turns(loop)
        loop._vigil_turns = turns  # type: ignore[attr-defined]
    return turns


class Outbox:
    """One connection's coalescing sender (see the module doc). Get it with `outbox_for`."""

    __slots__ = (
        "_connection",
        "_flush_due",
        "_loop",
        "_turns",
        "_turn",
        "_queued_bytes",
        "_turn_frames",
        "_coalescing",
        "_batching",
        "_held",
        "_high_water",
    )

    def __init__(self, connection: Connection):
        self._connection = connection
        self._loop = asyncio.get_running_loop()
        self._turns = _turns_of(self._loop)
        self._turn = -1  # the turn of this connection's last frame
        self._turn_frames = 0  # frames sent in that turn
        self._coalescing = False  # the last turn that sent sent more than one: this one's first frame waits
        self._flush_due = False  # frames wait for the end of this turn
        # Bytes framed since the last flush: they count against the high-water mark too, or a
        # sender that never yields could queue without bound before the first flush.
        self._queued_bytes = 0
        # Batch frames negotiated: messages waiting for the end of the turn are held unframed.
        self._batching = connection.subprotocol == BATCH_SUBPROTOCOL
        self._held: list[tuple[bytes, bool]] = []
        # The transport's high-water mark, set by the library when the connection was made.
        self._high_water = connection.transport.get_write_buffer_limits()[1]

    async def send(self, frame: bytes, *, text: bool) -> None:
        """Queue one frame (UTF-8 JSON when `text`, else binary). Raises ConnectionClosed like
        `Connection.send` when the connection is gone."""
        if not self.send_nowait(frame, text=text):
            self._frame_held()  # they go before this one
            await self._connection.send(frame, text=text)

    def can_send_now(self) -> bool:
        """Whether a frame queued now leaves without waiting: the connection is open and its write
        buffer (with what this turn has queued) is not above the high-water mark."""
        connection = self._connection
        transport = connection.transport
        return not (
            connection.protocol.state is not OPEN
            or transport.is_closing()
            or transport.get_write_buffer_size() + self._queued_bytes > self._high_water
        )

    def send_nowait(self, frame: bytes, *, text: bool) -> bool:
        """Queue one frame without waiting; False when it must take the waiting path instead."""
        if not self.can_send_now():
            return False
        turn = self._turns.current()
        if turn != self._turn:  # this connection's first frame this turn
            self._coalescing = self._turn_frames > 1
            self._turn = turn
            self._turn_frames = 0
        waits = self._turn_frames > 0 or self._coalescing  # it leaves at the end of the turn
        if waits and self._batching and len(frame) <= _MAX_HELD_BYTES:
            self._held.append((frame, text))
        else:
            if self._held:
                self._frame_held()
            protocol = self._connection.protocol
            try:
                if text:
                    protocol.send_text(frame)
                else:
                    protocol.send_binary(frame)
            except ProtocolError:  # a fragmented message in progress: let the library sequence it
                return False
        self._turn_frames += 1
        if not waits:
            self._write_queued()
            return True
        self._queued_bytes += len(frame)
        if not self._flush_due:
            self._flush_due = True
            self._loop.call_soon(self._flush)
        return True

    def _flush(self) -> None:
        self._flush_due = False
        self._queued_bytes = 0
        if self._held:
            self._frame_held()
        self._write_queued()

    def _frame_held(self) -> None:
        """Frame the held messages, in order: batch frames within the limits, a lone one plain."""
        held, self._held = self._held, []
        if not held:
            return
        protocol = self._connection.protocol
        if protocol.state is not OPEN:  # the connection is going; its close fails the waiters
            logger.debug("connection closing: %d queued messages not sent", len(held))
            return
        try:
            group: list[tuple[bytes, bool]] = []
            group_bytes = 0
            for message, text in held:
                if group and (
                    len(group) == MAX_BATCH_MESSAGES
                    or batch_size(len(group) + 1, group_bytes + len(message)) > MAX_BATCH_BYTES
                ):
                    self._frame_group(protocol, group)
                    group, group_bytes = [], 0
                group.append((message, text))
                group_bytes += len(message)
            self._frame_group(protocol, group)
        except ProtocolError:
            # Only a fragmented message in progress does this, and vigil never sends one
            # (Connection.send of an iterable); the senders' deadlines answer these requests.
            logger.error("a fragmented message is in progress: %d queued messages were not sent", len(held))

    @staticmethod
    def _frame_group(protocol, group: list[tuple[bytes, bool]]) -> None:
        if len(group) > 1:
            protocol.send_binary(encode_batch(group))
        elif group[0][1]:
            protocol.send_text(group[0][0])
        else:
            protocol.send_binary(group[0][0])

    def _write_queued(self) -> None:
        connection = self._connection
        chunks = connection.protocol.data_to_send()
        if not chunks:  # the library flushed them already (it writes on every send and receive)
            return
        transport = connection.transport
        if transport.is_closing():  # the connection is gone; its close handling fails the waiters
            return
        if b"" in chunks:  # an end-of-stream marker (closing): let the library write it its way
            for chunk in chunks:
                connection.protocol.writes.append(chunk)
            connection.send_data()
            return
        transport.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))


def outbox_for(connection: Connection) -> Outbox:
    """The connection's Outbox (made on first use, kept on the connection object)."""
    outbox = getattr(connection, _ATTRIBUTE, None)
    if outbox is None:
        outbox = Outbox(connection)
        setattr(connection, _ATTRIBUTE, outbox)
    return outbox
