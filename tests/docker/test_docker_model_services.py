"""Per-service image deploy: build each model backend image, run it alone, speak the seed protocol to it.

Uses tests/<service>/samples.py (valid_data, bad_inputs) as docs/CONTRACTS.md defines them.
"""

from __future__ import annotations

import pytest
from dockerlib import (
    MODEL_SERVICE_PORTS,
    REPO,
    container_state,
    http_get,
    load_samples,
    new_request_id,
    rpc,
    service_container,
    wait_docker_healthy,
    wait_http_ready,
    ws_client,
)

pytestmark = [pytest.mark.docker, pytest.mark.timeout(45 * 60)]


@pytest.mark.parametrize("service", sorted(MODEL_SERVICE_PORTS))
def test_model_service_has_dockerfile_and_samples(service: str) -> None:
    assert (REPO / "services" / service / "Dockerfile").is_file(), f"services/{service}/Dockerfile is missing"
    samples = load_samples(service)
    assert callable(samples.valid_data) and callable(samples.bad_inputs)


@pytest.mark.parametrize("service", sorted(MODEL_SERVICE_PORTS))
def test_model_service_container_speaks_the_protocol(service: str, service_image) -> None:
    samples = load_samples(service)
    image = service_image(service)
    port = MODEL_SERVICE_PORTS[service]
    with service_container(image, port) as (container, host_port):
        wait_http_ready(container, host_port)
        wait_docker_healthy(container)
        assert container_state(container)["Running"]
        assert http_get(host_port, "/healthz")[0] == 200

        with ws_client(host_port) as ws:
            # The seed's test sequence: health_check, then one inference_request.
            pong = rpc(ws, {"type": "health_check", "request_id": "h1"})
            assert pong["type"] == "pong", pong
            assert pong["status"] == "healthy", pong
            if service == "fatigue":  # the attention mesh the image compiled at build time, loaded
                assert pong["model"]["landmark_runtime"] == "aot-compiled", pong["model"]

            rid = new_request_id("valid")
            reply = rpc(ws, {"type": "inference_request", "request_id": rid, "data": samples.valid_data()})
            assert reply["type"] == "inference_response", reply
            assert reply["request_id"] == rid
            assert isinstance(reply["data"], dict) and reply["data"], reply

            # Every documented bad input is a bad_request naming the problem, never a crash.
            bad_cases = samples.bad_inputs()
            assert bad_cases, "bad_inputs() is empty"
            for label, data in bad_cases:
                rid = new_request_id("bad")
                reply = rpc(ws, {"type": "inference_request", "request_id": rid, "data": data})
                assert reply["type"] == "error", (label, reply)
                assert reply["code"] == "bad_request", (label, reply)
                assert reply["request_id"] == rid, (label, reply)
                assert reply["error"], (label, reply)

            # Malformed frames are answered too.
            for frame in ("not json", "[1, 2]", '{"type": "inference_request", "request_id": "m1"}'):
                reply = rpc(ws, frame)
                assert reply["type"] == "error" and reply["code"] == "bad_request", (frame, reply)
            reply = rpc(ws, {"type": "no_such_type", "request_id": "u1"})
            assert reply == {**reply, "type": "error", "code": "bad_request", "request_id": "u1"}, reply

            # Still serving on the same connection after all that.
            rid = new_request_id("after")
            reply = rpc(ws, {"type": "inference_request", "request_id": rid, "data": samples.valid_data()})
            assert reply["type"] == "inference_response" and reply["request_id"] == rid, reply

        assert container_state(container)["Running"]
        assert http_get(host_port, "/readyz")[0] == 200
