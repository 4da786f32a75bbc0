"""The immediate path (`answer_now`): a run_inline model without batching answers each request in
the frame loop itself, with no task and no batch-loop hand-off. The replies must be the ones the
queued path gives, for good and hostile input alike, on real sockets."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect

from shared_protocol import BaseModelBackend
from support.controlled_backend import ControlledBackend
from support.net import connect_ws, rpc, serving, wait_ready


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=60))


class Counted(ControlledBackend):
    """Counts the requests that took the queued path (`handle`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.queued = 0

    async def handle(self, peer, msg):
        self.queued += 1
        return await super().handle(peer, msg)


def inline_backend(**kwargs) -> Counted:
    backend = Counted(**kwargs)
    backend.run_inline = True
    return backend


def request(request_id: str, data, **extra) -> str:
    return json.dumps({"type": "inference_request", "request_id": request_id, "data": data, **extra})


HOSTILE = [
    ("data not an object", '{"type":"inference_request","request_id":"a","data":[1,2]}', "bad_request", "JSON object"),
    ("data missing", '{"type":"inference_request","request_id":"b"}', "bad_request", "missing field 'data'"),
    ("NaN in data", '{"type":"inference_request","request_id":"c","data":{"x":NaN}}', "bad_request", ""),
    (
        "huge integer",
        '{"type":"inference_request","request_id":"d","data":{"x":' + "9" * 5000 + "}}",
        "bad_request",
        "",
    ),
    (
        "deep nesting",
        '{"type":"inference_request","request_id":"e","data":' + '{"a":' * 400 + "1" + "}" * 401,
        "bad_request",
        "",
    ),
    ("model refuses", request("f", {"op": "bad", "message": "no face"}), "bad_request", "no face"),
    ("model raises", request("g", {"op": "raise", "message": "boom"}), "internal", "boom"),
    ("unencodable result", request("h", {"op": "nan"}), "internal", "cannot be encoded"),
    ("unknown op", request("i", {"op": "fly"}), "bad_request", "field 'op'"),
]


def test_inline_replies_equal_the_queued_path_and_skip_it():
    async def answers(backend: Counted) -> list[dict]:
        async with serving(backend) as url:
            await wait_ready(backend)
            async with await connect_ws(url) as ws:
                out = [await rpc(ws, request(f"r{i}", {"n": i, "session_id": "s"}, trace_id=f"t{i}")) for i in range(5)]
                out.append(await rpc(ws, request("bad", {"op": "bad", "message": "nope"})))
        return out

    async def scenario():
        inline, queued = inline_backend(), Counted()
        fast, slow = await answers(inline), await answers(queued)
        assert inline.queued == 0 and queued.queued == 6  # the inline one never took the queued path
        for a, b in zip(fast, slow, strict=True):
            for reply in (a, b):  # timings differ by nature; everything else must not
                reply.get("timing", {}).pop("queue_ms", None)
                reply.get("timing", {}).pop("compute_ms", None)
                if "data" in reply:
                    reply["data"].pop("pid", None)
            assert a == b
        assert fast[0]["trace_id"] == "t0" and fast[0]["model_version"] == "test" and "timing" in fast[0]
        assert inline.calls == 6 and inline._admitted == 0 and inline._server.in_flight == 0

    run(scenario())


@pytest.mark.parametrize(("label", "frame", "code", "text"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_input_gets_one_error_and_the_connection_serves_on(label, frame, code, text):
    async def scenario():
        backend = inline_backend()
        async with serving(backend) as url:
            await wait_ready(backend)
            async with await connect_ws(url) as ws:
                reply = await rpc(ws, frame)
                assert reply["type"] == "error" and reply["code"] == code, reply
                assert text in reply["error"]
                ok = await rpc(ws, request("after", {"n": 1}))
                assert ok["type"] == "inference_response" and ok["data"]["echo"] == {"n": 1}
                with pytest.raises(TimeoutError):  # exactly one reply each
                    await asyncio.wait_for(ws.recv(), 0.2)
        assert backend._admitted == 0 and backend._server.in_flight == 0 and backend._server.pending_bytes == 0

    run(scenario())


def test_a_reader_that_stops_reading_makes_replies_wait_not_vanish():
    """Above the write buffer's high-water mark a reply takes the waiting path (a task); every
    request is still answered once, in order, and an unsent reply still counts against the
    connection's in-flight and byte limits, so the server's memory stays bounded meanwhile."""

    async def scenario():
        backend = inline_backend(max_queue=512)
        async with serving(backend) as url:
            await wait_ready(backend)
            blob = "x" * 150_000
            async with connect(url, max_size=None, open_timeout=5, max_queue=1) as ws:
                ws.transport.pause_reading()  # the client's kernel buffer fills, then the server's
                for i in range(64):
                    await ws.send(request(f"p{i}", {"i": i, "blob": blob}))
                await asyncio.sleep(0.5)
                assert max(len(p.tasks) for p in backend._server._peers) > 0  # replies waiting, as tasks
                # An unsent reply is still in flight: it counts against the connection's limit.
                assert backend._server.in_flight > 0 and backend._server.pending_bytes > 0
                ws.transport.resume_reading()
                replies = [json.loads(await asyncio.wait_for(ws.recv(), 20)) for _ in range(64)]
                assert [r["type"] for r in replies] == ["inference_response"] * 64
                assert [r["request_id"] for r in replies] == [f"p{i}" for i in range(64)]  # once each, in order
                assert (await rpc(ws, request("later", {"i": 64})))["type"] == "inference_response"
        assert backend._server.in_flight == 0 and backend._server.pending_bytes == 0

    run(scenario())


def test_two_clients_interleaved_see_only_their_own_replies_and_sessions():
    async def scenario():
        backend = inline_backend()
        async with serving(backend) as url:
            await wait_ready(backend)
            async with await connect_ws(url) as a, await connect_ws(url) as b:
                for i in range(20):
                    await a.send(request(f"x{i}", {"who": "a", "i": i}))
                    await b.send(request(f"x{i}", {"who": "b", "i": i}))
                for ws, who in ((a, "a"), (b, "b")):
                    for i in range(20):
                        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
                        assert reply["request_id"] == f"x{i}" and reply["data"]["echo"] == {"who": who, "i": i}

    run(scenario())


def test_batching_or_a_worker_model_keeps_the_queued_path():
    async def scenario(backend: Counted, expect_queued: int):
        async with serving(backend) as url:
            await wait_ready(backend)
            async with await connect_ws(url) as ws:
                for i in range(3):
                    assert (await rpc(ws, request(f"q{i}", {"i": i})))["type"] == "inference_response"
        assert backend.queued == expect_queued

    run(scenario(Counted(), 3))  # a worker-thread model
    run(scenario(inline_backend(max_batch_size=4), 3))  # batching: requests wait for company
    run(scenario(inline_backend(), 0))


def test_answer_now_declines_while_requests_are_queued():
    backend = inline_backend()
    assert isinstance(backend, BaseModelBackend)

    async def scenario():
        async with serving(backend):
            await wait_ready(backend)
            item = backend._collector.submit(b"{}", "someone", 0.0)  # a request ahead in the queue
            try:
                assert backend.answer_now(None, None) is None  # declines before reading the request
            finally:
                backend._collector.discard(item)

    run(scenario())


class BatchOnly(BaseModelBackend):
    """A model with its own process_batch (and no usable process_inference), run inline."""

    model_name = "batch-only"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.run_inline = True
        self.batch_sizes: list[int] = []

    def initialize_model(self) -> None:
        pass

    def process_inference(self, data):
        raise AssertionError("a backend with process_batch gets every batch, even of one")

    def process_batch(self, inputs):
        self.batch_sizes.append(len(inputs))
        op = inputs[0].get("op")
        if op == "short":
            return []  # a wrong number of results
        if op == "raise":
            raise RuntimeError("batch boom")
        return [{"n": data.get("n"), "owner_set": bool(data.owner)} for data in inputs]

    def cleanup(self) -> None:
        pass


def test_the_immediate_path_calls_process_batch_of_one_and_answers_its_failures():
    """answer_now follows the model-call rule of the queued path (`_compute`): a backend with its own
    process_batch gets a batch of one; a wrong result count or a raise is one internal error for the
    request, and the connection serves on."""

    async def scenario():
        backend = BatchOnly("127.0.0.1", 0)
        async with serving(backend) as url:
            await wait_ready(backend)
            async with await connect_ws(url) as ws:
                ok = await rpc(ws, request("a", {"n": 1}))
                assert ok["type"] == "inference_response" and ok["data"] == {"n": 1, "owner_set": True}, ok
                short = await rpc(ws, request("b", {"op": "short"}))
                assert short["code"] == "internal" and "returned 0 results for 1" in short["error"], short
                boom = await rpc(ws, request("c", {"op": "raise"}))
                assert boom["code"] == "internal" and "batch boom" in boom["error"], boom
                bad = await rpc(ws, request("d", {"x": 1e999}))  # refused by the decoder: no model call
                assert bad["code"] == "bad_request", bad
                again = await rpc(ws, request("e", {"n": 2}))
                assert again["data"]["n"] == 2, again
        assert backend.batch_sizes == [1, 1, 1, 1]
        assert backend._admitted == 0 and backend._server.in_flight == 0

    run(scenario())
