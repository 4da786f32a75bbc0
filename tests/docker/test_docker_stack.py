"""The whole stack through compose.yaml: up, all healthy, requests through the gateway reach every
model backend whose image exists; a stopped backend is reported down and answered `unavailable`;
a restarted one is reconnected and answering again.

Model services without services/<name>/Dockerfile yet are left out of `up` and disabled in the
gateway (VIGIL_<NAME>_ENABLED=false), so the test covers whatever has landed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from dockerlib import (
    MAIN_PORT,
    MAIN_SERVICE,
    MODEL_SERVICE_PORTS,
    REPO,
    compose_command,
    load_samples,
    new_request_id,
    rpc,
    run_docker,
    ws_client,
)
from websockets.exceptions import WebSocketException

pytestmark = [pytest.mark.docker, pytest.mark.timeout(60 * 60)]
logger = logging.getLogger(__name__)

RECONNECT_INTERVAL_S = 2.0
REQUEST_TIMEOUT_S = 10.0
HEALTH_INTERVAL_S = 2.0
RECONNECT_MARGIN_S = 8.0  # docker's health probe period (5 s) + scheduling slack on 2 cores
ALL_HEALTHY_TIMEOUT_S = 300.0
BACKEND_RESTART_TIMEOUT_S = 240.0

# Test-only gateway tuning on top of compose.yaml: short timers so the test is quick, and retries
# that never give up (the capped backoff then bounds the reconnect delay by reconnect_interval).
OVERRIDE_TEMPLATE = """\
services:
  main_backend:
    environment:
      VIGIL_MAIN_HEALTH_INTERVAL: "{health}"
{backend_env}
"""


class Stack:
    """One compose project (unique name), driven through the compose CLI that docker-setup.sh found."""

    def __init__(self, setup: dict[str, str], override: Path, services: list[str], env: dict[str, str]) -> None:
        self.setup = setup
        self.project = f"vigiltest{uuid.uuid4().hex[:8]}"
        self.files = ["-f", str(REPO / "compose.yaml"), "-f", str(override)]
        self.services = services
        self.env = env

    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> str:
        cmd = [*compose_command(self.setup), "-p", self.project, *self.files, *args]
        proc = subprocess.run(cmd, cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def container_id(self, service: str) -> str:
        cid = self.compose("ps", "-q", service).strip()
        assert cid, f"no container for {service}"
        return cid

    def health(self, service: str) -> str:
        cid = self.container_id(service)
        return run_docker(self.setup, "inspect", "-f", "{{.State.Health.Status}}", cid).strip()

    def main_port(self) -> int:
        out = run_docker(self.setup, "port", self.container_id(MAIN_SERVICE), f"{MAIN_PORT}/tcp").strip()
        host, _, port = out.splitlines()[0].rpartition(":")
        assert host == "127.0.0.1", f"gateway published on {host}, expected 127.0.0.1 only"
        return int(port)

    def wait_healthy(self, services: list[str], timeout: float) -> float:
        started = time.monotonic()
        states: dict[str, str] = {}
        while time.monotonic() - started < timeout:
            states = {name: self.health(name) for name in services}
            if all(state == "healthy" for state in states.values()):
                return time.monotonic() - started
            time.sleep(1.0)
        raise AssertionError(f"not all healthy after {timeout:.0f} s: {states}\n{self.logs()}")

    def logs(self) -> str:
        return self.compose("logs", "--no-color", "--tail", "60", timeout=60, check=False)[-8000:]


@contextlib.contextmanager
def running_stack(setup: dict[str, str], tmp_path: Path, present: list[str]) -> Iterator[Stack]:
    backend_env = "\n".join(
        f'      VIGIL_GATEWAY_BACKENDS__{name.upper()}__{key}: "{value}"'
        for name in present
        for key, value in (
            ("RECONNECT_INTERVAL", RECONNECT_INTERVAL_S),
            ("MAX_RECONNECT_ATTEMPTS", 100000),
            ("REQUEST_TIMEOUT", REQUEST_TIMEOUT_S),
        )
    )
    override = tmp_path / "compose.test.yaml"
    override.write_text(OVERRIDE_TEMPLATE.format(health=HEALTH_INTERVAL_S, backend_env=backend_env))
    env = {**os.environ, "VIGIL_PORT": "0", "VIGIL_BIND_ADDRESS": "127.0.0.1"}
    for name in MODEL_SERVICE_PORTS:
        env[f"VIGIL_{name.upper()}_ENABLED"] = "true" if name in present else "false"
    stack = Stack(setup, override, [MAIN_SERVICE, *present], env)
    try:
        # --no-deps: model services whose image has not landed yet are not started.
        stack.compose("up", "-d", "--no-deps", *stack.services, timeout=600)
        yield stack
    except BaseException:
        logger.error("compose logs:\n%s", stack.logs())
        raise
    finally:
        stack.compose("down", "-v", "--remove-orphans", "--timeout", "10", timeout=300, check=False)


def wait_gateway(port: int, predicate, timeout: float, what: str) -> tuple[float, dict]:
    """Poll the gateway's pong until predicate(pong) holds; return (seconds, pong)."""
    started = time.monotonic()
    pong: dict = {}
    while time.monotonic() - started < timeout:
        with contextlib.suppress(OSError, TimeoutError, WebSocketException), ws_client(port) as ws:
            pong = rpc(ws, {"type": "health_check"}, timeout=10)
            if predicate(pong):
                return time.monotonic() - started, pong
        time.sleep(0.25)
    raise AssertionError(f"gateway: {what} not reached within {timeout:.0f} s; last pong: {pong}")


def test_compose_stack_relays_survives_backend_stop_and_reconnects(docker_env, service_image, tmp_path) -> None:
    present = sorted(MODEL_SERVICE_PORTS)  # every model service must be in the stack
    for name in [MAIN_SERVICE, *present]:
        service_image(name)
    samples = {name: load_samples(name) for name in present}

    with running_stack(docker_env, tmp_path, present) as stack:
        up_to_healthy = stack.wait_healthy(stack.services, ALL_HEALTHY_TIMEOUT_S)
        logger.info("stack %s: all healthy %.1f s after up", stack.services, up_to_healthy)
        port = stack.main_port()

        def all_ready(pong: dict) -> bool:
            return all(pong["backends"][name]["status"] == "healthy" for name in present)

        _, pong = wait_gateway(port, all_ready, 60, "every backend ready")
        assert pong["status"] == "healthy", pong

        with ws_client(port) as ws:
            # Each backend answers through :8765 with the relayed request_id.
            for name in present:
                rid = new_request_id(name)
                reply = rpc(
                    ws,
                    {"type": "inference_request", "request_id": rid, "model": name, "data": samples[name].valid_data()},
                )
                assert reply["type"] == "inference_response", (name, reply)
                assert reply["request_id"] == rid and reply["data"], (name, reply)
            # One `analyze` with an image and an EEG chunk together fans out to every backend.
            merged: dict = {}
            for name in present:
                merged.update(samples[name].valid_data())
            assert "image" in merged and "eeg" in merged
            reply = rpc(ws, {"type": "analyze", "request_id": "an1", "data": merged})
            assert reply["type"] == "analyze_response", reply
            assert set(reply["data"]["results"]) == set(present), reply["data"]
            assert not reply["data"]["errors"], reply["data"]

        # Stop one backend: reported down, its requests answered `unavailable` within request_timeout.
        victim = "eeg"
        cid = stack.container_id(victim)
        run_docker(docker_env, "stop", "--time", "10", cid, timeout=60)
        wait_gateway(
            port, lambda p: p["backends"][victim]["status"] == "unhealthy", REQUEST_TIMEOUT_S, f"{victim} down"
        )
        with ws_client(port) as ws:
            rid = new_request_id("down")
            started = time.monotonic()
            reply = rpc(
                ws,
                {"type": "inference_request", "request_id": rid, "model": victim, "data": samples[victim].valid_data()},
                timeout=REQUEST_TIMEOUT_S + 5,
            )
            assert reply["type"] == "error" and reply["code"] == "unavailable", reply
            assert time.monotonic() - started <= REQUEST_TIMEOUT_S
            pong = rpc(ws, {"type": "health_check"})
            assert pong["status"] == "degraded", pong

        # Start it again: healthy on its own, then the gateway reconnects within reconnect_interval + margin.
        run_docker(docker_env, "start", cid, timeout=60)
        backend_ready_s = stack.wait_healthy([victim], BACKEND_RESTART_TIMEOUT_S)
        started = time.monotonic()
        deadline = started + RECONNECT_INTERVAL_S + RECONNECT_MARGIN_S
        reply: dict = {}
        while time.monotonic() < deadline:
            with ws_client(port) as ws:
                reply = rpc(
                    ws,
                    {
                        "type": "inference_request",
                        "request_id": "again",
                        "model": victim,
                        "data": samples[victim].valid_data(),
                    },
                )
            if reply["type"] == "inference_response":
                break
            time.sleep(0.2)
        assert reply.get("type") == "inference_response", (
            f"{victim} not answering {RECONNECT_INTERVAL_S + RECONNECT_MARGIN_S:.0f} s after it was healthy again: {reply}"
        )
        logger.info(
            "%s: healthy %.1f s after docker start; answering through the gateway %.1f s after that",
            victim,
            backend_ready_s,
            time.monotonic() - started,
        )
        _, pong = wait_gateway(port, all_ready, HEALTH_INTERVAL_S + RECONNECT_MARGIN_S, "all ready again")
        assert pong["status"] == "healthy", pong
