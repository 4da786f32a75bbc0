"""Compose scale-out: `up --scale eeg=3` with compose.yaml unchanged. The gateway finds the three
replicas by DNS, keeps every session on one of them (the EEG backend's per-session sample count
keeps growing by one chunk per request), spreads the sessions over all three (each replica's own
`health_check` counts the sessions it holds), and survives `docker kill` of one: its sessions
continue on the others, each flagged `session_reset` once and restarted, the other sessions are
untouched, and every request is answered exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from dockerlib import MAIN_PORT, MAIN_SERVICE, REPO, compose_command, load_samples, run_docker
from websockets.asyncio.client import connect

pytestmark = [pytest.mark.docker, pytest.mark.timeout(30 * 60)]
logger = logging.getLogger(__name__)

REPLICAS = 3
SESSIONS = 60
CONNECTIONS = 3
ROUNDS = 8
KILL_ROUND = 4  # the victim is killed while this round is in flight
CHUNK_S = 0.5
HEALTHY_TIMEOUT_S = 300.0
RESOLVE_INTERVAL_S = 1.0

# Test-only tuning: quick re-resolution and reconnects; the eeg replicas are not restarted by the
# engine after `docker kill`, so the replica set stays 2 for the rest of the test.
OVERRIDE = f"""\
services:
  main_backend:
    environment:
      VIGIL_MAIN_HEALTH_INTERVAL: "1"
      VIGIL_EEG_RESOLVE_INTERVAL: "{RESOLVE_INTERVAL_S}"
      VIGIL_EEG_RECONNECT_INTERVAL: "0.5"
      VIGIL_EEG_MAX_RECONNECT_ATTEMPTS: "100000"
      VIGIL_EEG_REQUEST_TIMEOUT: "30"
      VIGIL_EEG_REQUIRED: "true"
  eeg:
    restart: "no"
"""

PONG_SCRIPT = (
    "import json; from websockets.sync.client import connect\n"
    "with connect('ws://127.0.0.1:8769', open_timeout=5) as ws:\n"
    "    ws.send(json.dumps({'type': 'health_check'})); print(ws.recv(timeout=10))\n"
)


class ScaledStack:
    def __init__(self, setup: dict[str, str], override: Path) -> None:
        self.setup = setup
        self.project = f"vigilscale{uuid.uuid4().hex[:8]}"
        self.files = ["-f", str(REPO / "compose.yaml"), "-f", str(override)]
        self.env = {
            **os.environ,
            "VIGIL_PORT": "0",
            "VIGIL_BIND_ADDRESS": "127.0.0.1",
            "VIGIL_FATIGUE_ENABLED": "false",
            "VIGIL_EMOTION_ENABLED": "false",
            "VIGIL_EEG_ENABLED": "true",
        }

    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> str:
        cmd = [*compose_command(self.setup), "-p", self.project, *self.files, *args]
        proc = subprocess.run(cmd, cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def ids(self, service: str) -> list[str]:
        return self.compose("ps", "-q", service).split()

    def inspect(self, cid: str, template: str) -> str:
        return run_docker(self.setup, "inspect", "-f", template, cid).strip()

    def wait_healthy(self, expected: dict[str, int]) -> None:
        deadline = time.monotonic() + HEALTHY_TIMEOUT_S
        states: dict[str, list[str]] = {}
        while time.monotonic() < deadline:
            states = {s: [self.inspect(c, "{{.State.Health.Status}}") for c in self.ids(s)] for s in expected}
            if all(len(states[s]) == n and set(states[s]) == {"healthy"} for s, n in expected.items()):
                return
            time.sleep(1.0)
        raise AssertionError(f"not healthy after {HEALTHY_TIMEOUT_S:.0f} s: {states}\n{self.logs()}")

    def main_port(self) -> int:
        (cid,) = self.ids(MAIN_SERVICE)
        out = run_docker(self.setup, "port", cid, f"{MAIN_PORT}/tcp").strip()
        host, _, port = out.splitlines()[0].rpartition(":")
        assert host == "127.0.0.1", out
        return int(port)

    def sessions_held(self, cid: str) -> int:
        """The replica's own count of sessions, from its pong (asked inside its container)."""
        out = run_docker(self.setup, "exec", cid, "/opt/venv/bin/python", "-c", PONG_SCRIPT, timeout=60)
        return int(json.loads(out)["model"]["sessions"])

    def logs(self) -> str:
        return self.compose("logs", "--no-color", "--tail", "60", timeout=60, check=False)[-8000:]


@contextlib.contextmanager
def scaled_stack(setup: dict[str, str], tmp_path: Path) -> Iterator[ScaledStack]:
    override = tmp_path / "compose.scale.yaml"
    override.write_text(OVERRIDE)
    stack = ScaledStack(setup, override)
    try:
        stack.compose("up", "-d", "--no-deps", "--scale", f"eeg={REPLICAS}", MAIN_SERVICE, "eeg", timeout=600)
        yield stack
    except BaseException:
        logger.error("compose logs:\n%s", stack.logs())
        raise
    finally:
        stack.compose("down", "-v", "--remove-orphans", "--timeout", "10", timeout=300, check=False)


class Clients:
    """CONNECTIONS client connections, requests pipelined, every reply counted by request id."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conns: list = []
        self.readers: list[asyncio.Task] = []
        self.pending: dict[str, asyncio.Future] = {}
        self.answers: Counter = Counter()

    async def __aenter__(self) -> Clients:
        for _ in range(CONNECTIONS):
            ws = await connect(self.url, max_size=None, open_timeout=10)
            self.conns.append(ws)
            self.readers.append(asyncio.create_task(self._read(ws)))
        return self

    async def __aexit__(self, *exc) -> None:
        for task in self.readers:
            task.cancel()
        for ws in self.conns:
            await ws.close()

    async def _read(self, ws) -> None:
        async for frame in ws:
            reply = json.loads(frame)
            self.answers[reply.get("request_id")] += 1
            future = self.pending.get(reply.get("request_id"))
            if future is not None and not future.done():
                future.set_result(reply)

    async def request(self, index: int, message: dict) -> dict:
        rid = message["request_id"]
        self.pending[rid] = asyncio.get_running_loop().create_future()
        await self.conns[index % CONNECTIONS].send(json.dumps(message))
        return await asyncio.wait_for(self.pending[rid], 90)


def test_compose_scale_eeg_3_affinity_spread_and_docker_kill(docker_env, service_image, tmp_path) -> None:
    for name in (MAIN_SERVICE, "eeg"):
        service_image(name)
    samples = load_samples("eeg")
    chunk = samples.eeg_payload_b64(samples.synthetic_eeg_uv(seconds=CHUNK_S), samples.CH_NAMES, samples.SFREQ)
    per_chunk = round(CHUNK_S * samples.SFREQ)

    with scaled_stack(docker_env, tmp_path) as stack:
        stack.wait_healthy({MAIN_SERVICE: 1, "eeg": REPLICAS})
        replicas = stack.ids("eeg")
        port = stack.main_port()
        time.sleep(3 * RESOLVE_INTERVAL_S + 2)  # the gateway has resolved and connected all three

        async def scenario() -> dict:
            replies: dict[tuple[int, int], dict] = {}
            victim: dict = {}
            async with Clients(f"ws://127.0.0.1:{port}") as clients:
                for rnd in range(ROUNDS):
                    if rnd == KILL_ROUND:
                        # Which replica holds how many sessions (between rounds: nothing in flight).
                        held = {cid: await asyncio.to_thread(stack.sessions_held, cid) for cid in replicas}
                        victim["held"] = held
                        victim["cid"] = max(held, key=held.get)
                    tasks = {
                        (i, rnd): asyncio.create_task(
                            clients.request(
                                i,
                                {
                                    "type": "inference_request",
                                    "request_id": f"s{i}-r{rnd}",
                                    "model": "eeg",
                                    "data": {"session_id": f"s{i}", "timestamp": rnd * CHUNK_S, "eeg": chunk},
                                },
                            )
                        )
                        for i in range(SESSIONS)
                    }
                    if rnd == KILL_ROUND:  # the busiest replica dies with this round in flight
                        await asyncio.sleep(0.05)
                        await asyncio.to_thread(run_docker, docker_env, "kill", victim["cid"])
                    for key, task in tasks.items():
                        replies[key] = await task
                await asyncio.sleep(1.0)  # a duplicate reply would arrive now
                assert len(clients.answers) == SESSIONS * ROUNDS
                assert set(clients.answers.values()) == {1}, "a request was answered more than once"
            return {"replies": replies, **victim}

        outcome = asyncio.run(asyncio.wait_for(scenario(), 20 * 60))

        held = outcome["held"]
        logger.info("sessions per replica before the kill: %s", held)
        # Spread: each of the three replicas holds sessions, and each session lives on exactly one.
        assert sum(held.values()) == SESSIONS, held
        assert all(count >= SESSIONS // 10 for count in held.values()), held
        assert stack.inspect(outcome["cid"], "{{.State.Running}}") == "false"

        replies = outcome["replies"]
        moved, errors = [], []
        for i in range(SESSIONS):
            expected = 0  # samples the session's replica has seen
            resets = 0
            for rnd in range(ROUNDS):
                reply = replies[(i, rnd)]
                if reply["type"] != "inference_response":
                    # Only requests in flight on the killed replica may fail, and only as unavailable.
                    assert rnd == KILL_ROUND and reply["code"] == "unavailable", (i, rnd, reply)
                    errors.append(i)
                    continue
                data = reply["data"]
                if data.get("session_reset"):
                    resets += 1
                    assert rnd >= KILL_ROUND, (i, rnd, data.get("session_reset_reason"))
                    assert data["session_reset_reason"].startswith(("replica_lost", "replica_unhealthy"))
                    expected = 0  # the new owner started the session fresh
                expected += per_chunk
                assert data["samples_received"] == expected, (i, rnd, data["samples_received"], expected)
            assert resets <= 1, (i, resets)
            if resets:
                moved.append(i)
        # Exactly the victim's sessions moved (its pong counted them before the kill).
        assert len(moved) == held[outcome["cid"]], (len(moved), held)
        assert set(errors) <= set(moved)
        logger.info("moved %d sessions; %d requests answered unavailable at the kill", len(moved), len(errors))
