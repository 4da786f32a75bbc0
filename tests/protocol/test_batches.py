"""Batch frames (shared_protocol.batches): the form, its limits, the outbox that builds them, and
the server and the client that read them — with hostile batches, and a second client beside."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

from shared_protocol import messages
from shared_protocol.batches import (
    BATCH_SUBPROTOCOL,
    MAX_BATCH_BYTES,
    MAX_BATCH_MESSAGES,
    encode_batch,
    is_batch,
    split_batch,
)
from shared_protocol.client import BackendClient
from shared_protocol.errors import BadRequestError
from shared_protocol.outbox import outbox_for
from shared_protocol.server import ServerLimits
from support.controlled_backend import ControlledBackend
from support.net import serving, wait_ready

MSGPACK = msgspec.msgpack.Encoder()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=60))


def request(request_id: str, **data) -> bytes:
    return messages.encode_bytes(messages.inference_request(request_id, {"op": "echo", **data}))


# ---- the form ----------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 31, 32, 255, 256, 65535, 65536])
def test_a_batch_carries_text_and_binary_messages_of_any_length_unchanged(length):
    text = ('{"type":"health_check","pad":"' + "é" * (length // 2) + '"}').encode()
    binary = MSGPACK.encode({"type": "health_check", "pad": b"\x00" * length})
    frame = encode_batch([(text, True), (binary, False), (b'{"type":"health_check"}', True)])
    assert is_batch(frame)
    if len(frame) > MAX_BATCH_BYTES:
        with pytest.raises(BadRequestError, match=f"at most {MAX_BATCH_BYTES} bytes"):
            split_batch(frame)
        return
    assert split_batch(frame) == [text.decode(), binary, '{"type":"health_check"}']


def test_the_count_header_is_checked_before_anything_is_built():
    for count_header in (b"\xdc\x00\x41", b"\xdd\xff\xff\xff\xff"):  # 65 and 4 billion messages
        with pytest.raises(BadRequestError, match=f"at most {MAX_BATCH_MESSAGES} messages"):
            split_batch(count_header + b"\xa0" * 8)
    assert len(split_batch(encode_batch([(b"{}", True)] * MAX_BATCH_MESSAGES))) == MAX_BATCH_MESSAGES


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (b"\x90", "at least one message"),
        (b"\x92\xa1x", "not valid MessagePack"),  # says two, carries one
        (b"\xdc\x00", "not valid MessagePack"),  # a truncated header
        (b"\x91\xa1x\xc0", "not valid MessagePack"),  # trailing bytes
    ],
)
def test_malformed_batches_are_refused_with_a_reason(frame, expected):
    with pytest.raises(BadRequestError, match=expected):
        split_batch(frame)


def test_elements_that_are_no_message_get_the_error_a_frame_with_them_would_get():
    frame = MSGPACK.encode([7, [1, 2], b"\xff\xfe", {"type": "health_check"}])
    elements = split_batch(frame)
    assert elements[3] == MSGPACK.encode({"type": "health_check"})
    for element in elements[:3]:
        with pytest.raises(BadRequestError, match="MessagePack map"):
            messages.parse_envelope(element, frozenset({"health_check"}), binary=True)
    # A string that is not UTF-8 is not JSON text: the binary parser refuses it too.
    (bad_text,) = split_batch(b"\x91\xa2\xff\xfe")
    with pytest.raises(BadRequestError):
        messages.parse_envelope(bad_text, frozenset({"health_check"}), binary=True)


_msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=20) | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=1500, deadline=None, derandomize=True)
@given(
    frame=st.binary(max_size=64).map(lambda b: b"\x93" + b)
    | st.lists(_msgpack_values, min_size=0, max_size=80).map(MSGPACK.encode)
)
def test_any_batch_is_split_or_refused_never_crashes(frame):
    """Arbitrary bytes after an array header, and arrays of arbitrary values: either messages
    (each str or bytes, at most MAX_BATCH_MESSAGES) or a BadRequestError, nothing else."""
    try:
        elements = split_batch(frame)
    except BadRequestError:
        return
    assert 1 <= len(elements) <= MAX_BATCH_MESSAGES
    for element in elements:
        assert isinstance(element, str | bytes)
        with contextlib.suppress(BadRequestError):
            messages.parse_envelope(element, frozenset({"health_check", "inference_request"}), binary=True)


def test_only_binary_arrays_are_batches():
    assert not is_batch("[1, 2]")  # JSON text is never a batch, even an array
    assert not is_batch(b"")
    assert not is_batch(MSGPACK.encode({"type": "health_check"}))
    assert is_batch(MSGPACK.encode([{"type": "health_check"}]))


# ---- the outbox builds them --------------------------------------------------------------------


class _Collector:
    """A server that selects `subprotocol` when offered and keeps every frame it gets, raw."""

    def __init__(self, subprotocol: str | None = BATCH_SUBPROTOCOL):
        self.frames: list = []
        self.subprotocol = subprotocol

    async def __aenter__(self) -> _Collector:
        async def handler(ws):
            async for frame in ws:
                self.frames.append(frame)

        protocols = [self.subprotocol] if self.subprotocol else None
        self._server = await serve(handler, "127.0.0.1", 0, subprotocols=protocols, max_size=None)
        self.url = f"ws://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc) -> None:
        self._server.close()
        await self._server.wait_closed()

    def messages(self) -> list:
        """Every message, batches opened, in arrival order."""
        out: list = []
        for frame in self.frames:
            out.extend(split_batch(frame) if is_batch(frame) else [frame])
        return out

    async def wait_for(self, count: int) -> None:
        for _ in range(500):
            if len(self.messages()) >= count:
                return
            await asyncio.sleep(0.01)


def test_messages_of_one_turn_leave_as_batch_frames_within_the_limits():
    """The turn's first message leaves at once (plain); the rest wait for the end of the turn and
    leave as batch frames of at most MAX_BATCH_MESSAGES; a message too large to batch goes plain,
    in its place."""

    async def main():
        async with (
            _Collector() as server,
            connect(server.url, subprotocols=[BATCH_SUBPROTOCOL], write_limit=1024 * 1024) as ws,
        ):
            assert ws.subprotocol == BATCH_SUBPROTOCOL
            outbox = outbox_for(ws)
            sent = [b'{"n":%d}' % n for n in range(MAX_BATCH_MESSAGES + 10)]
            big = b'{"big":"' + b"x" * MAX_BATCH_BYTES + b'"}'
            for n, message in enumerate(sent):
                assert outbox.send_nowait(message, text=True)
                if n == 5:
                    assert outbox.send_nowait(big, text=True)
            assert outbox.send_nowait(b"\x81\xa1n\xa3bin", text=False)  # a binary message batches too
            await server.wait_for(len(sent) + 2)
            return server.frames, server.messages(), sent, big

    frames, received, sent, big = run(main())
    expected = [m.decode() for m in sent[:6]] + [big.decode()] + [m.decode() for m in sent[6:]]
    assert received == expected + [b"\x81\xa1n\xa3bin"]
    assert frames[0] == '{"n":0}'  # lone at first: written at once, plain
    assert frames[2] == big.decode()  # too large to batch: plain, after the five held before it
    sizes = [len(split_batch(f)) if is_batch(f) else 1 for f in frames]
    assert sizes == [1, 5, 1, MAX_BATCH_MESSAGES, 5]


def test_a_batch_stays_within_the_byte_limit():
    async def main():
        async with (
            _Collector() as server,
            connect(server.url, subprotocols=[BATCH_SUBPROTOCOL], write_limit=1024 * 1024) as ws,
        ):
            outbox = outbox_for(ws)
            chunk = b'"' + b"y" * 10_000 + b'"'
            for _ in range(20):
                assert outbox.send_nowait(chunk, text=True)
            await server.wait_for(20)
            return server.frames, server.messages()

    frames, received = run(main())
    assert received == ['"' + "y" * 10_000 + '"'] * 20
    assert all(len(f) <= MAX_BATCH_BYTES for f in frames if is_batch(f))
    assert sum(is_batch(f) for f in frames) >= 3  # 19 waiting messages of 10 KB: several batches


def test_without_the_subprotocol_nothing_is_batched():
    async def main():
        async with _Collector(subprotocol=None) as server, connect(server.url) as ws:
            outbox = outbox_for(ws)
            for n in range(10):
                assert outbox.send_nowait(b'{"n":%d}' % n, text=True)
            await server.wait_for(10)
            return server.frames

    assert run(main()) == [f'{{"n":{n}}}' for n in range(10)]


def test_held_messages_go_before_a_frame_that_takes_the_waiting_path():
    """A reader that stops reading: the outbox's waiting path must not overtake held messages."""

    async def main():
        release = asyncio.Event()
        received: list = []

        async def handler(ws):
            ws.transport.pause_reading()
            await release.wait()
            ws.transport.resume_reading()
            async for frame in ws:
                received.append(frame)

        server = await serve(handler, "127.0.0.1", 0, subprotocols=[BATCH_SUBPROTOCOL], max_size=None)
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        async with connect(url, subprotocols=[BATCH_SUBPROTOCOL], write_limit=32 * 1024) as ws:
            outbox = outbox_for(ws)
            # Not a MessagePack array's first byte: a random one is, 18 times in 256, and the
            # reader below would take the plain frame for a batch.
            chunk = b"r" + os.urandom(40 * 1024 - 1)
            order = []
            for n in range(30):
                small = b'{"n":%d}' % n
                order.append(small.decode())
                await outbox.send(small, text=True)  # held while the turn lasts
                order.append(chunk + bytes([n]))
                await outbox.send(chunk + bytes([n]), text=False)  # big: plain, maybe the waiting path
            release.set()
            for _ in range(1000):
                opened = [m for f in received for m in (split_batch(f) if is_batch(f) else [f])]
                if len(opened) >= len(order):
                    break
                await asyncio.sleep(0.01)
        server.close()
        await server.wait_closed()
        return opened, order

    opened, order = run(main())
    assert opened == order


# ---- a server reads them -----------------------------------------------------------------------


def test_a_backend_answers_every_message_of_a_batch_on_its_own():
    """Each element is admitted as if it came alone: JSON and binary requests get their replies, a
    bad element gets its error, a request over the in-flight limit is refused — and a second client
    on the same backend sees none of it."""

    async def main():
        backend = ControlledBackend()
        async with serving(backend) as url:
            await wait_ready(backend)
            async with (
                connect(url, subprotocols=[BATCH_SUBPROTOCOL, messages.BINARY_SUBPROTOCOL]) as ws,
                connect(url) as other,
            ):
                assert ws.subprotocol == BATCH_SUBPROTOCOL
                batch = [
                    (request("j1", i=1), True),
                    (MSGPACK.encode(messages.inference_request("m1", {"op": "echo", "i": 2})), False),
                    (b'{"type":"inference_request","request_id":"bad","data":3}', True),
                    (MSGPACK.encode(7), False),
                    (b"{oops", True),
                ]
                await ws.send(encode_batch(batch))
                await other.send(request("o1").decode())
                replies = await _replies(ws, 5)
                other_reply = json.loads(await other.recv())
        return replies, other_reply

    replies, other_reply = run(main())
    by_id = {r.get("request_id"): r for r in replies}
    assert by_id["j1"]["type"] == "inference_response" and by_id["j1"]["data"]["echo"]["i"] == 1
    assert by_id["m1"]["type"] == "inference_response" and by_id["m1"]["data"]["echo"]["i"] == 2
    assert by_id["bad"]["code"] == "bad_request" and "JSON object" in by_id["bad"]["error"]
    unnamed = [r for r in replies if r.get("request_id") is None]
    assert len(unnamed) == 2 and all(r["code"] == "bad_request" for r in unnamed)
    assert any("MessagePack map" in r["error"] for r in unnamed)
    assert any("not valid JSON" in r["error"] for r in unnamed)
    assert other_reply["request_id"] == "o1" and other_reply["type"] == "inference_response"


def test_batch_elements_count_against_the_in_flight_limit_one_by_one():
    async def main():
        backend = ControlledBackend(server_limits=ServerLimits(max_in_flight_per_connection=2))
        async with serving(backend) as url:
            await wait_ready(backend)
            async with connect(url, subprotocols=[BATCH_SUBPROTOCOL]) as ws:
                slow = [(request(f"s{n}", op="sleep", ms=300), True) for n in range(5)]
                await ws.send(encode_batch(slow))
                return await _replies(ws, 5)

    replies = run(main())
    outcomes = sorted((r["request_id"], r["type"], r.get("code")) for r in replies)
    assert [o[1] for o in outcomes].count("inference_response") == 2
    assert [o[2] for o in outcomes].count("overloaded") == 3


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (b"\xdd\xff\xff\xff\xff" + b"\xa0" * 16, f"at most {MAX_BATCH_MESSAGES} messages"),
        (b"\x90", "at least one message"),
        (b"\x93\xa1x", "not valid MessagePack"),
        (encode_batch([(b"{}", True)] * 40_000), "at most"),
    ],
    ids=["count", "empty", "truncated", "oversize"],
)
def test_a_batch_that_breaks_the_rules_gets_one_error_and_the_connection_stays(frame, expected):
    async def main():
        backend = ControlledBackend()
        async with serving(backend) as url:
            await wait_ready(backend)
            async with connect(url, subprotocols=[BATCH_SUBPROTOCOL], max_size=None) as ws:
                await ws.send(frame)
                refusal = await _replies(ws, 1)
                await ws.send(request("after").decode())
                after = await _replies(ws, 1)
                calls = backend.calls
        return refusal, after, calls

    (refusal,), (after,), calls = run(main())
    assert refusal["type"] == "error" and refusal["request_id"] is None and refusal["code"] == "bad_request"
    assert expected in refusal["error"]
    assert after["request_id"] == "after" and after["type"] == "inference_response"
    assert calls == 1  # nothing of the refused batch reached the model


def test_a_batch_frame_without_the_subprotocol_is_one_bad_message():
    """On a vigil.msgpack connection an array is no message (the seed's rules, unchanged)."""

    async def main():
        backend = ControlledBackend()
        async with serving(backend) as url:
            await wait_ready(backend)
            async with connect(url, subprotocols=[messages.BINARY_SUBPROTOCOL]) as ws:
                assert ws.subprotocol == messages.BINARY_SUBPROTOCOL
                await ws.send(encode_batch([(request("a"), True), (request("b"), True)]))
                return await _replies(ws, 1), backend.calls

    (reply,), calls = run(main())
    assert reply["code"] == "bad_request" and "MessagePack map" in reply["error"] and calls == 0


def test_a_server_with_frames_smaller_than_a_batch_does_not_select_batches():
    async def main():
        backend = ControlledBackend(max_message_size=MAX_BATCH_BYTES - 1)
        async with serving(backend) as url:
            await wait_ready(backend)
            async with connect(url, subprotocols=[BATCH_SUBPROTOCOL, messages.BINARY_SUBPROTOCOL]) as ws:
                return ws.subprotocol

    assert run(main()) == messages.BINARY_SUBPROTOCOL


async def _replies(ws, count: int) -> list[dict]:
    """`count` replies, batches opened, each decoded from its form."""
    out: list[dict] = []
    while len(out) < count:
        frame = await asyncio.wait_for(ws.recv(), 10)
        for message in split_batch(frame) if is_batch(frame) else [frame]:
            out.append(json.loads(message) if isinstance(message, str) else msgspec.msgpack.decode(message))
    return out


# ---- the client reads them ---------------------------------------------------------------------


def test_backend_client_negotiates_batches_and_matches_every_reply():
    async def main():
        backend = ControlledBackend()
        backend.run_inline = True  # replies of one turn: batched on the way back too
        async with serving(backend) as url:
            await wait_ready(backend)
            on = BackendClient("on", url)
            off = BackendClient("off", url, batch_frames=False)
            on.start()
            off.start()
            try:
                for client in (on, off):
                    for _ in range(200):
                        if client.connected:
                            break
                        await asyncio.sleep(0.01)
                protocols = on._connection.subprotocol, off._connection.subprotocol
                replies = await asyncio.gather(
                    *[c.request({"op": "echo", "n": n}) for n in range(100) for c in (on, off)]
                )
            finally:
                await on.close()
                await off.close()
        return protocols, replies

    protocols, replies = run(main())
    assert protocols == (BATCH_SUBPROTOCOL, messages.BINARY_SUBPROTOCOL)
    assert all(r.ok for r in replies)
    assert [r.data["echo"]["n"] for r in replies] == [n for n in range(100) for _ in range(2)]


def test_backend_client_survives_a_bad_batch_from_its_backend(caplog):
    """A backend that sends garbage batches: logged, and the requests end by their deadline."""

    async def main():
        async def handler(ws):
            async for _ in ws:
                await ws.send(b"\xdd\xff\xff\xff\xff")  # claims 4 billion replies

        server = await serve(handler, "127.0.0.1", 0, subprotocols=[BATCH_SUBPROTOCOL])
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        client = BackendClient("liar", url, request_timeout=0.3)
        client.start()
        try:
            for _ in range(200):
                if client.connected:
                    break
                await asyncio.sleep(0.01)
            reply = await client.request({"op": "echo"})
            return reply, client.connected
        finally:
            await client.close()
            server.close()
            await server.wait_closed()

    with caplog.at_level(logging.WARNING, logger="shared_protocol.client"):
        reply, connected = run(main())
    assert reply.code == "timeout" and connected
    assert "unreadable batch frame" in caplog.text
