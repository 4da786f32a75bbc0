"""Main backend image alone: it starts without any model backend, reports `degraded`, answers
requests for absent backends with `unavailable`, and rejects bad input with `bad_request`."""

from __future__ import annotations

import time

import pytest
from dockerlib import (
    MAIN_PORT,
    MAIN_SERVICE,
    container_state,
    http_get,
    new_request_id,
    rpc,
    service_container,
    wait_docker_healthy,
    wait_http_ready,
    ws_client,
)

pytestmark = [pytest.mark.docker, pytest.mark.timeout(20 * 60)]

REQUEST_TIMEOUT_S = 3.0
# Nothing listens on these inside the lone container: every backend stays disconnected.
LONE_ENV = {
    **{f"VIGIL_GATEWAY_BACKENDS__{name.upper()}__HOST": "127.0.0.1" for name in ("fatigue", "emotion", "eeg")},
    **{
        f"VIGIL_GATEWAY_BACKENDS__{name.upper()}__REQUEST_TIMEOUT": str(REQUEST_TIMEOUT_S)
        for name in ("fatigue", "emotion", "eeg")
    },
    "VIGIL_EMOTION_ENABLED": "false",
}


def test_main_backend_container_alone_is_degraded_and_validates_input(service_image) -> None:
    image = service_image(MAIN_SERVICE)
    with service_container(image, MAIN_PORT, env=LONE_ENV) as (container, port):
        wait_http_ready(container, port)
        wait_docker_healthy(container)
        assert http_get(port, "/healthz")[0] == 200
        status, body = http_get(port, "/metrics")
        assert status == 200 and b"# TYPE" in body

        # Runs as the unprivileged user baked into the image.
        user = container.get_wrapped_container().attrs["Config"]["User"]
        assert user and user != "root", user

        with ws_client(port) as ws:
            pong = rpc(ws, {"type": "health_check", "request_id": "h1"})
            assert pong["type"] == "pong" and pong["status"] == "degraded", pong
            backends = pong["backends"]
            assert set(backends) >= {"fatigue", "emotion", "eeg"}, backends
            assert backends["emotion"]["status"] == "disabled", backends
            assert backends["eeg"]["status"] == backends["fatigue"]["status"] == "unhealthy", backends

            # An enabled but absent backend: `unavailable`, well within its request_timeout.
            rid = new_request_id("eeg")
            started = time.monotonic()
            reply = rpc(ws, {"type": "inference_request", "request_id": rid, "model": "eeg", "data": {"x": 1}})
            assert reply["type"] == "error" and reply["code"] == "unavailable", reply
            assert reply["request_id"] == rid
            assert time.monotonic() - started < REQUEST_TIMEOUT_S + 1.0

            # A disabled backend is unavailable too; `analyze` reports per-backend errors.
            reply = rpc(ws, {"type": "inference_request", "request_id": "d1", "model": "emotion", "data": {}})
            assert reply["type"] == "error" and reply["code"] == "unavailable", reply
            reply = rpc(ws, {"type": "analyze", "request_id": "a1", "data": {"eeg": {"x": 1}, "session_id": "s"}})
            assert reply["type"] == "analyze_response", reply
            assert reply["data"]["errors"]["eeg"]["code"] == "unavailable", reply

            bad_requests = [
                ("not json", "not json"),
                ("not an object", "[1]"),
                ("unknown type", {"type": "nope", "request_id": "b1"}),
                ("missing request_id", {"type": "inference_request", "model": "eeg", "data": {}}),
                ("missing data", {"type": "inference_request", "request_id": "b2", "model": "eeg"}),
                ("data not an object", {"type": "inference_request", "request_id": "b3", "model": "eeg", "data": 1}),
                ("missing model", {"type": "inference_request", "request_id": "b4", "data": {}}),
                ("model not a string", {"type": "inference_request", "request_id": "b5", "model": 3, "data": {}}),
                ("unknown model", {"type": "inference_request", "request_id": "b6", "model": "nope", "data": {}}),
                ("analyze without inputs", {"type": "analyze", "request_id": "b7", "data": {"session_id": "s"}}),
            ]
            for label, message in bad_requests:
                reply = rpc(ws, message)
                assert reply["type"] == "error" and reply["code"] == "bad_request", (label, reply)
                assert reply["error"], (label, reply)

            pong = rpc(ws, {"type": "health_check"})
            assert pong["type"] == "pong" and pong["status"] == "degraded", pong

        assert container_state(container)["Running"]
