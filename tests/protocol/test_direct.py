"""Direct delivery (shared_protocol.direct): complete frames go to `on_message` from data_received;
everything else, and everything after a message that had to wait, goes through the library's queue
and recv(), in the order the messages came. On real sockets, against the pinned websockets."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

from shared_protocol.direct import DirectClientConnection, DirectServerConnection
from shared_protocol.server import ProtocolServer
from support.controlled_backend import ControlledBackend
from support.net import connect_ws, rpc, serving, wait_ready


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=60))


class Recorder:
    """A server handler that records which way each message came: 'direct' or 'recv'."""

    def __init__(self, take=lambda message: True):
        self.take = take  # on_message's answer: True takes the message
        self.seen: list[tuple[str, str | bytes]] = []
        self.closed: list[int | None] = []
        self.ready = asyncio.Event()  # set once on_message is in place

    def on_message(self, message):
        if not self.take(message):
            return False
        self.seen.append(("direct", message))
        return True

    async def handler(self, websocket):
        websocket.on_message = self.on_message
        self.ready.set()
        try:
            async for message in websocket:
                self.seen.append(("recv", message))
        except ConnectionClosed:
            pass
        self.closed.append(websocket.close_code)


async def started(recorder: Recorder):
    return await serve(recorder.handler, "127.0.0.1", 0, create_connection=DirectServerConnection, compression=None)


def url_of(server) -> str:
    return f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def settle(predicate, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def test_complete_frames_are_delivered_directly_text_and_binary():
    async def scenario():
        recorder = Recorder()
        async with await started(recorder) as server, connect(url_of(server)) as ws:
            await recorder.ready.wait()
            await ws.send("héllo")
            await ws.send(b"\x00\xff")
            await settle(lambda: len(recorder.seen) == 2)
        assert recorder.seen == [("direct", "héllo"), ("direct", b"\x00\xff")]

    run(scenario())


def test_a_message_not_taken_goes_to_recv_and_the_ones_after_it_keep_their_order():
    async def scenario():
        refuse = {"wait"}
        recorder = Recorder(take=lambda message: message not in refuse)
        seen = recorder.seen
        async with await started(recorder) as server, connect(url_of(server)) as ws:
            await recorder.ready.wait()
            for message in ("a", "wait", "b", "c"):
                await ws.send(message)
            await settle(lambda: len(seen) == 4)
            # Once the queue has drained, frames go direct again.
            await ws.send("d")
            await settle(lambda: len(seen) == 5)
        assert [m for _, m in seen] == ["a", "wait", "b", "c", "d"]  # in the order sent
        assert seen[0] == ("direct", "a") and seen[1] == ("recv", "wait")
        assert seen[4] == ("direct", "d")

    run(scenario())


def test_fragmented_messages_are_assembled_by_the_library_in_order():
    async def scenario():
        recorder = Recorder()
        async with await started(recorder) as server, connect(url_of(server)) as ws:
            await recorder.ready.wait()
            await ws.send("one")
            await ws.send(iter(["frag", "mented"]))  # one message in three frames
            await ws.send("two")
            await settle(lambda: len(recorder.seen) == 3)
        assert [m for _, m in recorder.seen] == ["one", "fragmented", "two"]
        assert recorder.seen[1] == ("recv", "fragmented")

    run(scenario())


def test_text_that_is_not_utf8_fails_the_connection_with_1007_as_without_direct_delivery():
    async def scenario():
        recorder = Recorder()
        async with await started(recorder) as server:
            async with connect(url_of(server)) as ws:
                await recorder.ready.wait()
                await ws.send("fine")
                ws.protocol.send_text(b"\xff\xfe")  # the sans-I/O layer sends bytes as they are
                ws.send_data()
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), 5)
                assert closed.value.rcvd.code == 1007
            await settle(lambda: recorder.closed != [])  # the handler's recv() loop ended
        assert recorder.seen == [("direct", "fine")]

    run(scenario())


def test_a_bug_in_on_message_closes_that_connection_1011_and_the_server_serves_on():
    async def scenario():
        def explode(message):
            if message == "boom":
                raise RuntimeError("bug")
            return True

        recorder = Recorder(take=explode)
        async with await started(recorder) as server:
            async with connect(url_of(server)) as ws:
                await ws.send("boom")
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), 5)
                assert closed.value.rcvd.code == 1011
            recorder.ready.clear()
            async with connect(url_of(server)) as ws:
                await recorder.ready.wait()
                await ws.send("ok")
                await settle(lambda: ("direct", "ok") in recorder.seen)

    run(scenario())


def test_the_client_connection_class_delivers_directly_too():
    async def scenario():
        async def echo(websocket):
            async for message in websocket:
                await websocket.send(message)

        async with await serve(echo, "127.0.0.1", 0) as server:
            got: list = []
            async with connect(url_of(server), create_connection=DirectClientConnection) as ws:
                ws.on_message = lambda message: got.append(message) or True
                await ws.send("ping-me")
                await settle(lambda: got == ["ping-me"])
                ws.on_message = None  # without it, messages come by recv() as usual
                await ws.send("again")
                assert await asyncio.wait_for(ws.recv(), 5) == "again"

    run(scenario())


# ---- in the server core: ProtocolServer takes frames by direct delivery ---------------------------


@pytest.fixture
def through_recv(monkeypatch) -> list:
    """The frames that reached ProtocolServer through the recv() loop (`_on_frame`)."""
    seen: list = []
    original = ProtocolServer._on_frame

    async def counting(self, peer, frame):
        seen.append(frame)
        await original(self, peer, frame)

    monkeypatch.setattr(ProtocolServer, "_on_frame", counting)
    return seen


def test_protocol_server_answers_by_direct_delivery_and_not_through_recv(through_recv):
    async def scenario():
        backend = ControlledBackend()
        backend.run_inline = True
        async with serving(backend) as url:
            await wait_ready(backend)
            async with await connect_ws(url) as ws:
                for i in range(20):
                    reply = await rpc(ws, {"type": "inference_request", "request_id": f"r{i}", "data": {"i": i}})
                    assert reply["data"]["echo"] == {"i": i}
                assert (await rpc(ws, '{"type":"inference_request"'))["code"] == "bad_request"
                assert (await rpc(ws, {"type": "health_check"}))["type"] == "pong"
        assert through_recv == []

    run(scenario())


def test_a_client_that_sends_garbage_and_never_reads_is_held_by_flow_control(through_recv):
    """With the peer's write buffer full, frames are not taken directly: they queue for the recv()
    loop, which waits on each error reply's send, so the server stops reading that client instead
    of piling up replies. Every frame is still answered once when the client reads again."""

    async def scenario():
        backend = ControlledBackend(max_queue=512)
        backend.run_inline = True
        async with serving(backend) as url:
            await wait_ready(backend)
            blob = "x" * 150_000
            async with connect(url, max_size=None, open_timeout=5, max_queue=1) as ws:
                ws.transport.pause_reading()
                for i in range(64):  # big replies fill both kernel buffers and the server's
                    await ws.send(json.dumps({"type": "inference_request", "request_id": f"p{i}", "data": {"b": blob}}))
                await asyncio.sleep(0.5)
                sent = 0

                async def flood():
                    nonlocal sent
                    for i in range(5000):
                        await ws.send(f'{{"type":"inference_request","request_id":"g{i}"')  # malformed
                        sent += 1

                flooding = asyncio.create_task(flood())
                await asyncio.sleep(1.0)
                (peer,) = backend._server._peers
                # Held: the server's tasks for this peer stay few (the 64 replies waiting, at most a
                # handful more), however many garbage frames the client has pushed.
                assert len(peer.tasks) <= 64 + 2
                assert through_recv  # the frames that could not be answered now went to recv()
                ws.transport.resume_reading()
                await asyncio.wait_for(flooding, 30)
                ids = []
                for _ in range(64 + sent):
                    ids.append(json.loads(await asyncio.wait_for(ws.recv(), 20)).get("request_id"))
                assert sorted(i for i in ids if i and i.startswith("p")) == sorted(f"p{i}" for i in range(64))
                assert len(ids) == 64 + sent  # one reply each, none lost
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(ws.recv(), 0.2)
        assert backend._server.in_flight == 0 and backend._server.pending_bytes == 0

    run(scenario())
