"""BaseModelBackend over real sockets on 127.0.0.1, driven by the controlled test backend."""

import asyncio
import json
import time

import pytest
import websockets

from support.controlled_backend import ControlledBackend
from support.net import BackendProcess, connect_ws, free_port, http_get, rpc, serving, wait_http, wait_ready


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=60))


SEED_IMAGE = "base64-encoded-image"


def test_seed_test_script_sequence_verbatim():
    """The seed README's own test script: health_check, then an inference_request."""

    async def scenario():
        backend = ControlledBackend()
        async with serving(backend) as url:
            await wait_ready(backend)
            async with websockets.connect(url) as websocket:
                await websocket.send(json.dumps({"type": "health_check"}))
                response = json.loads(await websocket.recv())
                assert response["type"] == "pong" and response["status"] == "healthy"
                await websocket.send(
                    json.dumps({"type": "inference_request", "request_id": "test-123", "data": {"image": SEED_IMAGE}})
                )
                response = json.loads(await websocket.recv())
                assert response["type"] == "inference_response"
                assert response["request_id"] == "test-123"
                assert response["data"]["echo"] == {"image": SEED_IMAGE}

    run(scenario())


BAD_FRAMES = [
    ("not json", "{oops", None, "not valid JSON"),
    ("array", "[]", None, "must be a JSON object"),
    ("no type", '{"request_id": "a"}', "a", "missing field 'type'"),
    ("unknown type", '{"type": "predict", "request_id": "b"}', "b", "unknown message type"),
    ("no request_id", '{"type": "inference_request", "data": {}}', None, "missing field 'request_id'"),
    ("numeric request_id", '{"type": "inference_request", "request_id": 1, "data": {}}', None, "non-empty string"),
    ("no data", '{"type": "inference_request", "request_id": "c"}', "c", "missing field 'data'"),
    ("data not object", '{"type": "inference_request", "request_id": "d", "data": 3}', "d", "JSON object"),
    ("model bad input", '{"type": "inference_request", "request_id": "e", "data": {"op": "bad"}}', "e", "bad input"),
    ("unknown op", '{"type": "inference_request", "request_id": "f", "data": {"op": "fly"}}', "f", "field 'op'"),
]


@pytest.mark.parametrize(("label", "frame", "request_id", "expected"), BAD_FRAMES, ids=[b[0] for b in BAD_FRAMES])
def test_bad_input_gets_error_and_connection_survives(label, frame, request_id, expected):
    async def scenario():
        backend = ControlledBackend()
        async with serving(backend) as url:
            await wait_ready(backend)
            async with await connect_ws(url) as ws:
                reply = await rpc(ws, frame)
                assert reply["type"] == "error", reply
                assert reply["code"] == "bad_request"
                assert reply["request_id"] == request_id
                assert expected in reply["error"]
                ok = await rpc(ws, {"type": "inference_request", "request_id": "after", "data": {"n": 1}})
                assert ok["type"] == "inference_response" and ok["request_id"] == "after"

    run(scenario())


def test_binary_frame_gets_error_and_connection_survives():
    async def scenario():
        backend = ControlledBackend()
        async with serving(backend) as url:
            await wait_ready(backend)
            async with await connect_ws(url) as ws:
                await ws.send(b"\x00\x01")
                reply = json.loads(await ws.recv())
                assert reply["code"] == "bad_request" and "binary" in reply["error"]
                assert (await rpc(ws, {"type": "health_check"}))["type"] == "pong"

    run(scenario())


def test_fifty_pipelined_requests_each_answered_exactly_once():
    async def scenario():
        backend = ControlledBackend(max_concurrency=4, max_queue=64)
        async with serving(backend) as url:
            await wait_ready(backend)
            async with await connect_ws(url) as ws:
                for i in range(50):
                    data = {"op": "sleep", "ms": (i * 7) % 5, "i": i}
                    await ws.send(json.dumps({"type": "inference_request", "request_id": f"p{i}", "data": data}))
                seen = {}
                for _ in range(50):
                    reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    seen[reply["request_id"]] = seen.get(reply["request_id"], 0) + 1
                    assert reply["data"]["echo"]["i"] == int(reply["request_id"][1:])
                assert seen == {f"p{i}": 1 for i in range(50)}
                with pytest.raises(TimeoutError):  # nothing more arrives: no duplicates
                    await asyncio.wait_for(ws.recv(), 0.3)

    run(scenario())


def test_timeout_reply_and_backend_keeps_serving():
    async def scenario():
        backend = ControlledBackend(request_timeout=0.3)
        async with serving(backend) as url:
            await wait_ready(backend)
            async with await connect_ws(url) as ws:
                started = time.monotonic()
                reply = await rpc(
                    ws, {"type": "inference_request", "request_id": "slow", "data": {"op": "sleep", "ms": 800}}
                )
                assert reply["code"] == "timeout" and reply["request_id"] == "slow"
                assert time.monotonic() - started < 0.7
                # The worker is held until the model call really ends (threads can't be cancelled),
                # so a request now would wait; once it ends, requests flow again.
                await asyncio.sleep(0.7)
                reply = await rpc(ws, {"type": "inference_request", "request_id": "next", "data": {}}, timeout=5)
                assert reply["type"] == "inference_response"

    run(scenario())


def test_overload_is_refused_at_once():
    async def scenario():
        backend = ControlledBackend(max_concurrency=1, max_queue=2, request_timeout=10)
        async with serving(backend) as url:
            await wait_ready(backend)
            async with await connect_ws(url) as ws:
                for i in range(5):
                    msg = {"type": "inference_request", "request_id": f"o{i}", "data": {"op": "sleep", "ms": 300}}
                    await ws.send(json.dumps(msg))
                replies = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(5)]
                by_id = {r["request_id"]: r for r in replies}
                overloaded = [rid for rid, r in by_id.items() if r.get("code") == "overloaded"]
                assert sorted(overloaded) == ["o3", "o4"]
                # The refusals come first: they did not wait for the model.
                assert [r["request_id"] for r in replies[:2]] == ["o3", "o4"]
                assert all(by_id[f"o{i}"]["type"] == "inference_response" for i in range(3))
                # Health checks are answered while the model is busy.
                await ws.send(
                    json.dumps({"type": "inference_request", "request_id": "busy", "data": {"op": "sleep", "ms": 500}})
                )
                started = time.monotonic()
                pong = await rpc(ws, {"type": "health_check"})
                assert pong["type"] == "pong" and time.monotonic() - started < 0.2
                assert (json.loads(await asyncio.wait_for(ws.recv(), 5)))["request_id"] == "busy"

    run(scenario())


def test_model_exception_becomes_internal_error():
    async def scenario():
        backend = ControlledBackend()
        async with serving(backend) as url:
            await wait_ready(backend)
            async with await connect_ws(url) as ws:
                reply = await rpc(
                    ws, {"type": "inference_request", "request_id": "x", "data": {"op": "raise", "message": "cuda oom"}}
                )
                assert reply == {
                    "type": "error",
                    "request_id": "x",
                    "error": "RuntimeError: cuda oom",
                    "code": "internal",
                }
                reply = await rpc(ws, {"type": "inference_request", "request_id": "n", "data": {"op": "nan"}})
                assert reply["code"] == "internal" and "JSON" in reply["error"]
                assert (await rpc(ws, {"type": "inference_request", "request_id": "y", "data": {}}))[
                    "type"
                ] == "inference_response"

    run(scenario())


def test_loading_then_healthy_and_probes():
    async def scenario():
        backend = ControlledBackend(init_delay=0.5)
        async with serving(backend) as url:
            http = url.replace("ws://", "http://")
            async with await connect_ws(url) as ws:
                pong = await rpc(ws, {"type": "health_check", "request_id": "h1"})
                assert pong["status"] == "loading" and pong["request_id"] == "h1"
                model = {key: pong["model"][key] for key in ("name", "version", "device")}
                assert model == {"name": "controlled-test-backend", "version": "test", "device": "cpu"}
                assert (await asyncio.to_thread(http_get, http + "/healthz"))[0] == 200
                assert (await asyncio.to_thread(http_get, http + "/readyz"))[0] == 503
                reply = await rpc(ws, {"type": "inference_request", "request_id": "early", "data": {}})
                assert reply["code"] == "unavailable" and "loading" in reply["error"]
                await wait_ready(backend)
                assert (await rpc(ws, {"type": "health_check"}))["status"] == "healthy"
                assert (await asyncio.to_thread(http_get, http + "/readyz"))[0] == 200

    run(scenario())


def test_init_failure_reports_unhealthy_with_reason():
    async def scenario():
        backend = ControlledBackend(init_fail=True)
        async with serving(backend) as url:
            await wait_ready(backend)
            async with await connect_ws(url) as ws:
                pong = await rpc(ws, {"type": "health_check"})
                assert pong["status"] == "unhealthy" and "weights file not found" in pong["error"]
                reply = await rpc(ws, {"type": "inference_request", "request_id": "r", "data": {}})
                assert reply["code"] == "unavailable" and "weights file not found" in reply["error"]
            code, body = await asyncio.to_thread(http_get, url.replace("ws://", "http://") + "/readyz")
            assert code == 503 and "weights file not found" in body

    run(scenario())


def test_init_failure_exits_non_zero_when_strict():
    port = free_port()
    proc = BackendProcess(port, "--init-fail", "--exit-on-init-failure").start(wait=False)
    try:
        assert proc.proc.wait(timeout=20) == 1
    finally:
        proc.stop()


def test_oversize_message_closes_with_1009():
    async def scenario():
        backend = ControlledBackend(max_message_size=64 * 1024)
        async with serving(backend) as url:
            await wait_ready(backend)
            async with await connect_ws(url, max_size=None) as ws:
                big = {"type": "inference_request", "request_id": "big", "data": {"image": "A" * 100_000}}
                await ws.send(json.dumps(big))
                with pytest.raises(websockets.ConnectionClosed) as info:
                    await asyncio.wait_for(ws.recv(), 5)
                assert info.value.rcvd.code == 1009
            async with await connect_ws(url) as ws:  # the server itself is fine
                assert (await rpc(ws, {"type": "health_check"}))["status"] == "healthy"

    run(scenario())


def test_sigterm_drains_in_flight_work_then_cleans_up():
    port = free_port()
    proc = BackendProcess(port, "--grace-period", "5").start()
    try:

        async def scenario():
            async with await connect_ws(proc.url) as ws:
                await ws.send(
                    json.dumps({"type": "inference_request", "request_id": "drain", "data": {"op": "sleep", "ms": 800}})
                )
                await asyncio.sleep(0.2)
                proc.proc.send_signal(15)
                reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert reply["type"] == "inference_response" and reply["request_id"] == "drain"

        run(scenario())
        assert proc.proc.wait(timeout=15) == 0
        out = proc.output()
        assert "draining 1 in-flight" in out and "stopped" in out
        with pytest.raises(OSError):
            wait_http(f"http://127.0.0.1:{port}/healthz", timeout=0.5)
    finally:
        proc.stop()


def test_model_sees_one_thread_for_load_inference_and_cleanup():
    """With one worker, initialize_model, process_inference and cleanup share a thread (frameworks
    such as PyTorch keep per-calling-thread pools that slow down when a second thread calls)."""
    import threading

    class ThreadRecorder(ControlledBackend):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.threads: dict[str, set[int]] = {"init": set(), "infer": set(), "cleanup": set()}

        def initialize_model(self):
            self.threads["init"].add(threading.get_ident())

        def process_inference(self, data):
            self.threads["infer"].add(threading.get_ident())
            return {"ok": True}

        def cleanup(self):
            self.threads["cleanup"].add(threading.get_ident())

    async def scenario(backend):
        async with serving(backend) as url:
            await wait_ready(backend)
            async with await connect_ws(url) as ws:
                for i in range(5):
                    await rpc(ws, {"type": "inference_request", "request_id": f"t{i}", "data": {}})

    for kwargs in ({}, {"max_batch_size": 4}):
        backend = ThreadRecorder(**kwargs)
        run(scenario(backend))
        used = set().union(*backend.threads.values())
        assert len(used) == 1 and all(backend.threads.values()), backend.threads
        assert threading.get_ident() not in used  # never the event loop's thread


def test_stuck_model_call_cannot_hold_the_process_past_its_grace_period():
    """A model call that never returns: SIGTERM drains for the grace period, cleanup cannot run on
    the busy worker, and the process exits hard (non-zero) instead of hanging at interpreter exit."""
    port = free_port()
    proc = BackendProcess(port, "--grace-period", "1").start()
    try:

        async def scenario():
            async with await connect_ws(proc.url) as ws:
                stuck = {"type": "inference_request", "request_id": "stuck", "data": {"op": "sleep", "ms": 120000}}
                await ws.send(json.dumps(stuck))
                await asyncio.sleep(0.3)

        run(scenario())
        started = time.monotonic()
        proc.proc.send_signal(15)
        code = proc.proc.wait(timeout=20)
        assert code != 0 and time.monotonic() - started < 10
        assert "exiting without it" in proc.output()
    finally:
        proc.stop()
