"""Main backend over real sockets: relay, analyze fan-out, failures, reconnects, probes, metrics."""

import asyncio
import json
import time

import pytest

from support.controlled_backend import ControlledBackend
from support.net import BackendProcess, connect_ws, free_port, http_get, rpc, serving, wait_ready
from vigil_main_backend.config import Config
from vigil_main_backend.gateway import MainBackend


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=90))


def make_config(backends: dict, **main) -> Config:
    spec = {"main_backend": {"host": "127.0.0.1", "port": 0, "health_interval": 0.5, **main}, "model_backends": {}}
    for name, (port, extra) in backends.items():
        spec["model_backends"][name] = {
            "host": "127.0.0.1",
            "port": port,
            "reconnect_interval": 0.2,
            "max_reconnect_attempts": 3,
            "request_timeout": 5,
            **extra,
        }
    return Config.model_validate(spec)


async def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.02)


def test_relay_and_analyze_with_one_backend_down():
    async def scenario():
        fatigue = ControlledBackend()
        eeg = ControlledBackend()
        dead_port = free_port()  # nothing listens here: the emotion backend is down
        async with serving(fatigue) as fatigue_url, serving(eeg) as eeg_url:
            await wait_ready(fatigue)
            await wait_ready(eeg)
            config = make_config(
                {
                    "fatigue": (int(fatigue_url.rsplit(":", 1)[1]), {"inputs": ["image"]}),
                    "emotion": (dead_port, {"inputs": ["image"]}),
                    "eeg": (int(eeg_url.rsplit(":", 1)[1]), {"inputs": ["eeg"]}),
                    "spare": (dead_port, {"enabled": False}),
                }
            )
            gateway = MainBackend(config)
            async with serving(gateway) as url:
                await wait_for(lambda: gateway.clients["fatigue"].ready and gateway.clients["eeg"].ready)
                async with await connect_ws(url) as ws:
                    reply = await rpc(
                        ws, {"type": "inference_request", "request_id": "c1", "model": "fatigue", "data": {"x": 1}}
                    )
                    assert reply["type"] == "inference_response" and reply["request_id"] == "c1"
                    assert reply["data"]["echo"] == {"x": 1} and reply["model"] == "fatigue"
                    assert set(reply["timing"]) == {"queue_ms", "compute_ms"}
                    assert reply["model_version"] == "test"  # which model computed it, relayed
                    assert reply["trace_id"]  # minted by the gateway

                    data = {"session_id": "s1", "timestamp": 1.5, "image": "IMG", "eeg": {"sfreq": 128}}
                    reply = await rpc(ws, {"type": "analyze", "request_id": "a1", "data": data})
                    assert reply["type"] == "analyze_response" and reply["request_id"] == "a1"
                    body = reply["data"]
                    assert body["results"]["fatigue"]["echo"] == {"session_id": "s1", "timestamp": 1.5, "image": "IMG"}
                    assert body["results"]["eeg"]["echo"] == {
                        "session_id": "s1",
                        "timestamp": 1.5,
                        "eeg": {"sfreq": 128},
                    }
                    assert set(body["results"]) == {"fatigue", "eeg"}
                    assert body["errors"]["emotion"]["code"] == "unavailable"

                    pong = await rpc(ws, {"type": "health_check"})
                    assert pong["status"] == "degraded"
                    # The public view: a status word per backend, no addresses or error texts.
                    assert pong["backends"]["fatigue"]["status"] == "healthy"
                    assert pong["backends"]["eeg"]["status"] == "healthy"
                    assert pong["backends"]["emotion"]["status"] == "unhealthy"
                    assert "url" not in pong["backends"]["emotion"] and "last_error" not in pong["backends"]["emotion"]
                    assert pong["backends"]["spare"]["status"] == "disabled"
                    # The operator's view (open without auth; token-protected with it).
                    code, text = await asyncio.to_thread(http_get, url.replace("ws://", "http://") + "/status")
                    status = json.loads(text)
                    assert code == 200 and status["emotion"]["state"] in ("reconnecting", "down")
                    assert "connect failed" in status["emotion"]["last_error"]

                    reply = await rpc(
                        ws, {"type": "inference_request", "request_id": "d", "model": "spare", "data": {}}
                    )
                    assert reply["code"] == "unavailable" and "disabled" in reply["error"]
                    reply = await rpc(
                        ws, {"type": "inference_request", "request_id": "e", "model": "emotion", "data": {}}
                    )
                    assert reply["code"] == "unavailable" and reply["request_id"] == "e"

                    code, body = await asyncio.to_thread(http_get, url.replace("ws://", "http://") + "/metrics")
                    assert code == 200
                    assert 'vigil_backend_requests_total{backend="fatigue"} 2.0' in body
                    assert 'vigil_backend_errors_total{backend="emotion",code="unavailable"} 2.0' in body
                    assert 'vigil_backend_up{backend="emotion"} 0.0' in body
                    assert 'vigil_backend_compute_seconds_count{backend="fatigue"} 2.0' in body

    run(scenario())


GATEWAY_BAD_INPUTS = [
    ("no model", {"type": "inference_request", "request_id": "g1", "data": {}}, "missing field 'model'"),
    (
        "model not string",
        {"type": "inference_request", "request_id": "g2", "model": 3, "data": {}},
        "'model' must be a string",
    ),
    ("unknown model", {"type": "inference_request", "request_id": "g3", "model": "x", "data": {}}, "unknown model 'x'"),
    ("analyze no inputs", {"type": "analyze", "request_id": "g4", "data": {"session_id": "s"}}, "none of the inputs"),
    ("analyze data list", {"type": "analyze", "request_id": "g5", "data": []}, "JSON object"),
    ("analyze no id", {"type": "analyze", "data": {}}, "request_id"),
    (
        "backend-level bad input",
        {"type": "inference_request", "request_id": "g6", "model": "eeg", "data": {"op": "bad"}},
        "bad input",
    ),
]


@pytest.mark.parametrize(("label", "message", "expected"), GATEWAY_BAD_INPUTS, ids=[b[0] for b in GATEWAY_BAD_INPUTS])
def test_gateway_bad_input_gets_error_and_connection_survives(label, message, expected):
    async def scenario():
        eeg = ControlledBackend()
        async with serving(eeg) as eeg_url:
            await wait_ready(eeg)
            gateway = MainBackend(make_config({"eeg": (int(eeg_url.rsplit(":", 1)[1]), {})}))
            async with serving(gateway) as url:
                await wait_for(lambda: gateway.clients["eeg"].ready)
                async with await connect_ws(url) as ws:
                    reply = await rpc(ws, message)
                    assert reply["type"] == "error" and reply["code"] == "bad_request", reply
                    assert reply["request_id"] == message.get("request_id")
                    assert expected in reply["error"]
                    ok = await rpc(ws, {"type": "analyze", "request_id": "ok", "data": {"eeg": {"a": 1}}})
                    assert ok["type"] == "analyze_response" and ok["data"]["results"]["eeg"]["echo"] == {
                        "eeg": {"a": 1}
                    }

    run(scenario())


def test_backend_killed_mid_request_then_reconnects():
    port = free_port()
    proc = BackendProcess(port, "--max-concurrency", "2").start()  # the crash must not queue behind the sleep
    try:

        async def scenario():
            gateway = MainBackend(make_config({"eeg": (port, {"required": True})}))
            async with serving(gateway) as url:
                http = url.replace("ws://", "http://")
                await wait_for(lambda: gateway.clients["eeg"].ready)
                assert (await asyncio.to_thread(http_get, http + "/readyz"))[0] == 200
                async with await connect_ws(url) as ws:
                    slow = {
                        "type": "inference_request",
                        "request_id": "slow",
                        "model": "eeg",
                        "data": {"op": "sleep", "ms": 3000},
                    }
                    await ws.send(json.dumps(slow))
                    await asyncio.sleep(0.2)
                    started = time.monotonic()
                    crash = {
                        "type": "inference_request",
                        "request_id": "crash",
                        "model": "eeg",
                        "data": {"op": "crash"},
                    }
                    await ws.send(json.dumps(crash))
                    replies = {}
                    for _ in range(2):
                        reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
                        replies[reply["request_id"]] = reply
                    assert time.monotonic() - started < 1.5  # at once, not after request_timeout (5 s)
                    assert replies["slow"]["code"] == "unavailable" and replies["crash"]["code"] == "unavailable"

                    reply = await rpc(
                        ws, {"type": "inference_request", "request_id": "gone", "model": "eeg", "data": {}}
                    )
                    assert reply["code"] == "unavailable"
                    assert (await asyncio.to_thread(http_get, http + "/readyz"))[0] == 503
                    pong = await rpc(ws, {"type": "health_check"})
                    assert pong["status"] == "degraded" and pong["backends"]["eeg"]["status"] == "unhealthy"

                    proc.stop()
                    proc.args = ()
                    await asyncio.to_thread(proc.start)
                    restarted = time.monotonic()
                    await wait_for(lambda: gateway.clients["eeg"].ready, timeout=5)
                    assert time.monotonic() - restarted < 0.2 + 0.5 + 2.0  # reconnect_interval / health tick + margin
                    reply = await rpc(
                        ws, {"type": "inference_request", "request_id": "back", "model": "eeg", "data": {}}
                    )
                    assert reply["type"] == "inference_response"
                    assert gateway.clients["eeg"].status.reconnects == 1

        run(scenario())
    finally:
        proc.stop()


def test_backend_timeout_is_relayed_with_client_request_id():
    async def scenario():
        eeg = ControlledBackend(request_timeout=30)
        async with serving(eeg) as eeg_url:
            await wait_ready(eeg)
            config = make_config({"eeg": (int(eeg_url.rsplit(":", 1)[1]), {"request_timeout": 0.3})})
            gateway = MainBackend(config)
            async with serving(gateway) as url:
                await wait_for(lambda: gateway.clients["eeg"].ready)
                async with await connect_ws(url) as ws:
                    msg = {
                        "type": "inference_request",
                        "request_id": "mine",
                        "model": "eeg",
                        "data": {"op": "sleep", "ms": 700},
                    }
                    reply = await rpc(ws, msg)
                    assert reply["code"] == "timeout" and reply["request_id"] == "mine"
                    await asyncio.sleep(0.6)  # the late reply from the backend is dropped, not delivered twice
                    with pytest.raises(TimeoutError):
                        await asyncio.wait_for(ws.recv(), 0.2)

    run(scenario())


def test_client_request_ids_may_collide_across_connections():
    async def scenario():
        eeg = ControlledBackend(max_concurrency=4)
        async with serving(eeg) as eeg_url:
            await wait_ready(eeg)
            gateway = MainBackend(make_config({"eeg": (int(eeg_url.rsplit(":", 1)[1]), {})}))
            async with serving(gateway) as url:
                await wait_for(lambda: gateway.clients["eeg"].ready)
                async with await connect_ws(url) as a, await connect_ws(url) as b:
                    for ws, who in ((a, "a"), (b, "b")):
                        await ws.send(
                            json.dumps(
                                {
                                    "type": "inference_request",
                                    "request_id": "same",
                                    "model": "eeg",
                                    "data": {"who": who, "op": "sleep", "ms": 50},
                                }
                            )
                        )
                    ra, rb = json.loads(await a.recv()), json.loads(await b.recv())
                    assert ra["data"]["echo"]["who"] == "a" and rb["data"]["echo"]["who"] == "b"

    run(scenario())


def test_gateway_sigterm_drains(tmp_path):
    """SIGTERM on the main backend: in-flight relayed request still answered, exit code 0."""
    import subprocess
    import sys

    from support.net import REPO, wait_http

    backend_port, gateway_port = free_port(), free_port()
    cfg = tmp_path / "models.yaml"
    cfg.write_text(f"model_backends:\n  eeg:\n    host: 127.0.0.1\n    port: {backend_port}\n")
    with BackendProcess(backend_port):
        gw = subprocess.Popen(
            [sys.executable, "main.py", "--config", str(cfg), "--host", "127.0.0.1", "--port", str(gateway_port)],
            cwd=REPO / "services" / "main_backend",
            env={"PYTHONPATH": str(REPO / "shared_protocol" / "src"), "PATH": "/usr/bin:/bin"},
        )
        try:
            wait_http(f"http://127.0.0.1:{gateway_port}/readyz")

            async def scenario():
                async with await connect_ws(f"ws://127.0.0.1:{gateway_port}") as ws:
                    for _ in range(50):
                        if (await rpc(ws, {"type": "health_check"}))["backends"]["eeg"]["status"] == "healthy":
                            break
                        await asyncio.sleep(0.1)
                    msg = {
                        "type": "inference_request",
                        "request_id": "d",
                        "model": "eeg",
                        "data": {"op": "sleep", "ms": 600},
                    }
                    await ws.send(json.dumps(msg))
                    await asyncio.sleep(0.2)
                    gw.terminate()
                    reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    assert reply["type"] == "inference_response" and reply["request_id"] == "d"

            run(scenario())
            assert gw.wait(timeout=20) == 0
        finally:
            if gw.poll() is None:
                gw.kill()


def test_backend_batch_sizes_reach_prometheus_metrics():
    async def scenario():
        eeg = ControlledBackend(max_batch_size=4, max_queue_delay_ms=100)
        async with serving(eeg) as eeg_url:
            await wait_ready(eeg)
            gateway = MainBackend(make_config({"eeg": (int(eeg_url.rsplit(":", 1)[1]), {})}))
            async with serving(gateway) as url:
                await wait_for(lambda: gateway.clients["eeg"].ready)
                async with await connect_ws(url) as ws:
                    for i in range(4):
                        msg = {"type": "inference_request", "request_id": f"b{i}", "model": "eeg", "data": {"i": i}}
                        await ws.send(json.dumps(msg))
                    replies = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(4)]
                    assert {r["timing"]["batch_size"] for r in replies} == {4}
                code, body = await asyncio.to_thread(http_get, url.replace("ws://", "http://") + "/metrics")
                assert code == 200
                assert 'vigil_backend_batch_size_count{backend="eeg"} 4.0' in body
                assert 'vigil_backend_batch_size_sum{backend="eeg"} 16.0' in body

    run(scenario())
