"""Coalesced sends (shared_protocol.outbox): order, one write per turn, flow control, closed peers;
and the codec's fast paths that came with them (msgspec encode with the NaN guard, digit runs)."""

from __future__ import annotations

import asyncio
import json
import os

import pytest
import websockets
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

from shared_protocol import messages
from shared_protocol.outbox import outbox_for


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=60))


class _CountingTransport:
    """Wraps a transport to count write calls (the syscalls the outbox saves)."""

    def __init__(self, transport):
        self._transport = transport
        self.writes = 0

    def write(self, data):
        self.writes += 1
        self._transport.write(data)

    def __getattr__(self, name):
        return getattr(self._transport, name)


class _Receiver:
    """A WebSocket server that collects every frame it gets. Paused (a reader that stops reading, so
    TCP pushes back on the sender) until `release` is set; `paused=False` releases it at once."""

    def __init__(self, *, paused: bool = False):
        self.received: list = []
        self.started, self.release = asyncio.Event(), asyncio.Event()
        if not paused:
            self.release.set()

    async def __aenter__(self) -> _Receiver:
        async def handler(ws):
            ws.transport.pause_reading()
            self.started.set()
            await self.release.wait()
            ws.transport.resume_reading()
            async for frame in ws:
                self.received.append(frame)

        self._server = await serve(handler, "127.0.0.1", 0)
        self.url = f"ws://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def wait_for(self, count: int, seconds: float = 10.0) -> None:
        """Until `count` frames arrived (or the time is up; the caller's assertion then says so)."""
        deadline = asyncio.get_running_loop().time() + seconds
        while len(self.received) < count and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)


def test_frames_of_one_turn_leave_in_order_in_one_write():
    """A busy connection's turn leaves in one write. The first turn of a fresh connection writes its
    first frame at once (no turn before it had company), then coalesces the rest; from the next
    turn on, a turn that follows a busy one is one write."""

    async def main():
        async with _Receiver() as server, connect(server.url) as ws:
            counting = _CountingTransport(ws.transport)
            ws.transport = counting
            outbox = outbox_for(ws)
            assert outbox_for(ws) is outbox  # one per connection
            for turn in range(2):
                for i in range(20):
                    await outbox.send(json.dumps({"n": 20 * turn + i}).encode(), text=True)
                await outbox.send(b"\x00\x01binary", text=False)
                await server.wait_for(21 * (turn + 1))
            assert counting.writes == 2 + 1, counting.writes
            return server.received

    received = run(main())
    for turn in range(2):
        frames = received[21 * turn : 21 * (turn + 1)]
        assert [json.loads(f)["n"] for f in frames[:20]] == list(range(20 * turn, 20 * turn + 20))
        assert frames[20] == b"\x00\x01binary"


def test_a_lone_frame_leaves_at_once_and_a_busy_turn_switches_to_coalescing():
    """One frame per turn (one request in flight) is written when sent, not at the end of the turn;
    after a turn with company the next turn's first frame waits for the flush, until a lone turn."""

    async def main():
        async with _Receiver() as server, connect(server.url) as ws:
            counting = _CountingTransport(ws.transport)
            ws.transport = counting
            outbox = outbox_for(ws)
            assert outbox.send_nowait(b"alone", text=True)
            assert counting.writes == 1  # written in the call: no wait for the turn's end
            await asyncio.sleep(0.01)
            for n in range(3):  # a busy turn: first at once, two at the end
                assert outbox.send_nowait(b"busy%d" % n, text=True)
            await asyncio.sleep(0.01)
            assert counting.writes == 3
            assert outbox.send_nowait(b"after-busy", text=True)
            assert counting.writes == 3  # waits: the last turn had company
            await asyncio.sleep(0.01)
            assert counting.writes == 4
            assert outbox.send_nowait(b"lone-again", text=True)
            assert counting.writes == 5  # the last turn was lone: at once again
            await server.wait_for(6)
            return server.received

    assert run(main()) == ["alone", "busy0", "busy1", "busy2", "after-busy", "lone-again"]


def test_mixed_with_library_sends_keeps_order():
    async def main():
        async with _Receiver() as server, connect(server.url) as ws:
            outbox = outbox_for(ws)
            await outbox.send(b"1", text=True)
            await ws.send("2")  # the library's own send flushes what the outbox queued first
            await outbox.send(b"3", text=True)
            await server.wait_for(3)
            return server.received

    assert run(main()) == ["1", "2", "3"]


def test_slow_reader_gets_flow_control_not_unbounded_buffering():
    """Above the transport's high-water mark the outbox takes the library's waiting path: the
    sender blocks instead of growing its write buffer without bound."""

    async def main():
        async with (
            _Receiver(paused=True) as server,
            connect(server.url, write_limit=64 * 1024, compression=None) as ws,
        ):
            await server.started.wait()
            outbox = outbox_for(ws)
            chunk = os.urandom(256 * 1024)
            sent = 0

            async def flood():
                nonlocal sent
                for _ in range(400):  # 100 MB if nothing pushed back
                    await outbox.send(chunk, text=False)
                    sent += 1

            task = asyncio.create_task(flood())
            await asyncio.sleep(1.0)
            blocked_at = sent
            buffered = ws.transport.get_write_buffer_size()
            assert not task.done()
            assert blocked_at < 400
            # What sits in user space is bounded by the high-water mark plus one frame, not the flood.
            assert buffered <= 64 * 1024 + 2 * len(chunk) + 4096, buffered
            server.release.set()
            await asyncio.wait_for(task, 30)
            await server.wait_for(400)
            return blocked_at, len(server.received)

    blocked_at, count = run(main())
    assert count == 400


def test_send_on_a_closed_connection_raises_connection_closed():
    async def main():
        async def handler(ws):
            await ws.close()

        server = await serve(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}") as ws:
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
            with pytest.raises(websockets.ConnectionClosed):
                await outbox_for(ws).send(b"late", text=True)
        server.close()
        await server.wait_closed()

    run(main())


# ---- codec fast paths --------------------------------------------------------------------------


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_encode_refuses_non_finite_floats_even_though_msgspec_would_write_null(value):
    with pytest.raises(ValueError):
        messages.encode_bytes({"type": "inference_response", "request_id": "r", "data": {"x": [1.0, value]}})


def test_encode_keeps_real_nulls_and_surrogates_are_refused():
    out = messages.encode_bytes({"a": None, "b": "null", "c": "é", "d": 1.5})
    assert json.loads(out) == {"a": None, "b": "null", "c": "é", "d": 1.5}
    with pytest.raises(ValueError):
        messages.encode_bytes({"a": "\ud800"})


@pytest.mark.parametrize(
    ("text", "wide"),
    [
        ('{"n": 1234567890123456789}', True),  # 19 digits: may be beyond 64 bits, walk it
        ('{"n": 123456789012345678}', False),
        ('{"s": "' + "a" * ((1 << 20) - 12) + '", "n": 99999999999999999999}', True),  # across a window edge
        ('{"s": "' + "1" * 18 + 'x"}', False),
    ],
)
def test_digit_run_scan(text, wide):
    assert messages._needs_check(text)[1] is wide


def test_integer_beyond_64_bits_across_the_scan_window_is_refused():
    frame = (
        '{"type":"inference_request","request_id":"r","data":{"s":"'
        + "a" * ((1 << 20) - 40)
        + '","n":1'
        + "0" * 30
        + "}}"
    )
    msg = messages.parse_envelope(frame, frozenset({messages.INFERENCE_REQUEST}))
    with pytest.raises(messages.BadRequestError, match="beyond 64 bits"):
        messages.decode_data(msg.data_raw, request_id="r")
