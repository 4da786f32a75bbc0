"""Docker Swarm: deploy/swarm/stack.yaml on the local engine (one-node swarm) with 2 eeg replicas:
every service healthy, an `analyze` answered through the gateway, sessions spread over both
replicas; then `docker service scale` 2 -> 3 is picked up by the running gateway (no restart):
new sessions land on the third replica.

The engine is left as found: `swarm init` only when it was not in a swarm, `swarm leave --force`
(and removal of the docker_gwbridge network swarm created) only in that case.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
from dockerlib import MAIN_SERVICE, REPO, load_samples, rpc, run_docker, ws_client

pytestmark = [pytest.mark.docker, pytest.mark.timeout(30 * 60)]
logger = logging.getLogger(__name__)

STACK_FILE = REPO / "deploy" / "swarm" / "stack.yaml"
HEALTHY_TIMEOUT_S = 300.0
RESOLVE_INTERVAL_S = 1.0
CHUNK_S = 0.5

PONG_SCRIPT = (
    "import json; from websockets.sync.client import connect\n"
    "with connect('ws://127.0.0.1:8769', open_timeout=5) as ws:\n"
    "    ws.send(json.dumps({'type': 'health_check'})); print(ws.recv(timeout=10))\n"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def local_swarm(setup: dict[str, str]) -> Iterator[None]:
    state = run_docker(setup, "info", "--format", "{{.Swarm.LocalNodeState}}").strip()
    networks = set(run_docker(setup, "network", "ls", "--format", "{{.Name}}").split())
    initialised = state != "active"
    if initialised:
        run_docker(setup, "swarm", "init", "--advertise-addr", "127.0.0.1", timeout=120)
    try:
        yield
    finally:
        if initialised:
            run_docker(setup, "swarm", "leave", "--force", timeout=120, check=False)
            if "docker_gwbridge" not in networks:
                run_docker(setup, "network", "rm", "docker_gwbridge", timeout=60, check=False)


class SwarmStack:
    def __init__(self, setup: dict[str, str], port: int) -> None:
        self.setup = setup
        self.name = f"vigiltest{uuid.uuid4().hex[:8]}"
        self.port = port
        self.env = {
            **os.environ,
            "VIGIL_PORT": str(port),
            "VIGIL_EEG_REPLICAS": "2",
            "VIGIL_FATIGUE_REPLICAS": "0",
            "VIGIL_EMOTION_REPLICAS": "0",
            "VIGIL_FATIGUE_ENABLED": "false",
            "VIGIL_EMOTION_ENABLED": "false",
            "VIGIL_RESOLVE_INTERVAL": str(RESOLVE_INTERVAL_S),
        }

    def docker(self, *args: str, timeout: float = 300) -> str:
        proc = subprocess.run(
            [self.setup["VIGIL_DOCKER"], *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout + proc.stderr

    def deploy(self) -> str:
        # --resolve-image never: the images are local; no registry is asked for digests.
        return self.docker("stack", "deploy", "--resolve-image", "never", "-c", str(STACK_FILE), self.name)

    def replicas(self) -> dict[str, str]:
        out = self.docker(
            "service",
            "ls",
            "--filter",
            f"label=com.docker.stack.namespace={self.name}",
            "--format",
            "{{.Name}} {{.Replicas}}",
        )
        return dict(line.split(" ", 1) for line in out.strip().splitlines())

    def wait_running(self, expected: dict[str, int]) -> None:
        """Swarm counts a task running only once its healthcheck passed."""
        deadline = time.monotonic() + HEALTHY_TIMEOUT_S
        seen: dict[str, str] = {}
        while time.monotonic() < deadline:
            seen = self.replicas()
            if all(seen.get(f"{self.name}_{s}", "").split(" ")[0] == f"{n}/{n}" for s, n in expected.items()):
                return
            time.sleep(1.0)
        tasks = self.docker("stack", "ps", "--no-trunc", self.name)
        raise AssertionError(f"not running after {HEALTHY_TIMEOUT_S:.0f} s: {seen}\n{tasks}")

    def containers(self, service: str) -> list[str]:
        out = self.docker(
            "ps",
            "-q",
            "--filter",
            f"label=com.docker.swarm.service.name={self.name}_{service}",
            "--filter",
            "status=running",
        )
        return out.split()

    def sessions_held(self, cid: str) -> int:
        out = run_docker(self.setup, "exec", cid, "/opt/venv/bin/python", "-c", PONG_SCRIPT, timeout=60)
        return int(json.loads(out)["model"]["sessions"])

    def remove(self) -> None:
        subprocess.run(
            [self.setup["VIGIL_DOCKER"], "stack", "rm", self.name], capture_output=True, text=True, timeout=120
        )
        # Networks go once every task has stopped; wait so that `swarm leave` finds nothing left.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            left = run_docker(
                self.setup, "network", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={self.name}"
            ).split()
            running = run_docker(
                self.setup, "ps", "-aq", "--filter", f"label=com.docker.stack.namespace={self.name}"
            ).split()
            if not left and not running:
                return
            time.sleep(1.0)


def wait_eeg_replicas(port: int, replicas: int, timeout: float) -> dict:
    """Poll the gateway's public pong until eeg is healthy with `replicas` healthy replicas."""
    deadline = time.monotonic() + timeout
    pong: dict = {}
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception), ws_client(port) as ws:
            pong = rpc(ws, {"type": "health_check"}, timeout=10)
            eeg = pong.get("backends", {}).get("eeg", {})
            if eeg.get("status") == "healthy" and eeg.get("replicas") == {"healthy": replicas, "total": replicas}:
                return pong
        time.sleep(0.5)
    raise AssertionError(f"gateway on 127.0.0.1:{port}: eeg not {replicas}/{replicas} within {timeout:.0f} s: {pong}")


def stream_sessions(port: int, chunk: dict, prefix: str, sessions: int, rounds: int) -> None:
    """Every session sends `rounds` chunks; all must be answered, none may fail."""
    with ws_client(port) as ws:
        for rnd in range(rounds):
            for i in range(sessions):
                data = {"session_id": f"{prefix}{i}", "timestamp": rnd * CHUNK_S, "eeg": chunk}
                reply = rpc(
                    ws, {"type": "inference_request", "request_id": f"{prefix}{i}-{rnd}", "model": "eeg", "data": data}
                )
                assert reply["type"] == "inference_response", reply
                assert not reply["data"].get("session_reset"), reply["data"]


def test_swarm_stack_two_eeg_replicas_then_scale_to_three(docker_env, service_image) -> None:
    for name in (MAIN_SERVICE, "eeg"):
        service_image(name)
    samples = load_samples("eeg")
    chunk = samples.eeg_payload_b64(samples.synthetic_eeg_uv(seconds=CHUNK_S), samples.CH_NAMES, samples.SFREQ)

    with local_swarm(docker_env):
        stack = SwarmStack(docker_env, free_port())
        try:
            out = stack.deploy()
            assert "unsupported" not in out.lower(), f"stack options ignored by this engine:\n{out}"
            stack.wait_running({MAIN_SERVICE: 1, "eeg": 2})
            wait_eeg_replicas(stack.port, 2, 120)  # the gateway found both replicas

            # An analyze through the swarm gateway, answered by eeg.
            with ws_client(stack.port) as ws:
                reply = rpc(ws, {"type": "analyze", "request_id": "swarm-an1", "data": samples.valid_data()})
            assert reply["type"] == "analyze_response", reply
            assert "eeg" in reply["data"]["results"] and not reply["data"]["errors"], reply["data"]

            # Sessions spread over both replicas.
            stream_sessions(stack.port, chunk, "a", sessions=30, rounds=2)
            two = stack.containers("eeg")
            held = {cid: stack.sessions_held(cid) for cid in two}
            logger.info("sessions per replica with 2: %s", held)
            assert len(held) == 2 and all(count > 0 for count in held.values()), held

            gateway_before = stack.containers(MAIN_SERVICE)
            stack.docker("service", "scale", "--detach=false", f"{stack.name}_eeg=3", timeout=600)
            stack.wait_running({MAIN_SERVICE: 1, "eeg": 3})
            wait_eeg_replicas(stack.port, 3, 60)  # re-resolved by the running gateway

            # New sessions now use the third replica, through the same gateway container.
            stream_sessions(stack.port, chunk, "b", sessions=30, rounds=2)
            (third,) = set(stack.containers("eeg")) - set(two)
            assert stack.sessions_held(third) > 0, "the gateway did not pick up the third replica"
            assert stack.containers(MAIN_SERVICE) == gateway_before, "the gateway was restarted"
            restarts = run_docker(docker_env, "inspect", "-f", "{{.RestartCount}}", gateway_before[0]).strip()
            assert restarts == "0"
        except BaseException:
            with contextlib.suppress(Exception):
                logger.error("tasks:\n%s", stack.docker("stack", "ps", "--no-trunc", stack.name))
                for service in (MAIN_SERVICE, "eeg"):
                    logs = stack.docker("service", "logs", "--tail", "60", f"{stack.name}_{service}", timeout=60)
                    logger.error("%s logs:\n%s", service, logs[-6000:])
            raise
        finally:
            stack.remove()
