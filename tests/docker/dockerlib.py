"""Helpers for the container tests: engine setup, image builds, containers on 127.0.0.1, the wire protocol.

Containers are reached only through ports published on 127.0.0.1 (never the bridge IP), and every
container or compose project a test starts is removed by that test (Ryuk is disabled).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import shlex
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

# Before testcontainers is imported (it reads TC_HOST at import): no Ryuk reaper (tests remove
# what they start) and containers are reached via 127.0.0.1, never the bridge gateway.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
os.environ.setdefault("TC_HOST", "127.0.0.1")

from testcontainers.core.container import DockerContainer
from websockets.sync.client import ClientConnection, connect

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
MAIN_SERVICE = "main_backend"
MAIN_PORT = 8765
MODEL_SERVICE_PORTS = {"fatigue": 8767, "emotion": 8768, "eeg": 8769}
# A cold build of a torch image on 2 cores takes minutes; a model load in a container tens of seconds.
BUILD_TIMEOUT_S = 40 * 60
READY_TIMEOUT_S = 240.0
WS_MAX_SIZE = 32 * 1024 * 1024


# ---- engine and images ----------------------------------------------------------------------


def docker_setup() -> dict[str, str]:
    """Run scripts/docker-setup.sh (starts the engine, makes the base image); return its KEY=VALUE lines."""
    proc = subprocess.run(
        [str(REPO / "scripts" / "docker-setup.sh")], cwd=REPO, capture_output=True, text=True, timeout=20 * 60
    )
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/docker-setup.sh failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    env: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        words = shlex.split(line)  # the script quotes values for `eval`
        key, sep, value = (words[0] if len(words) == 1 else "").partition("=")
        if sep and key.isidentifier():
            env[key] = value
    missing = {"VIGIL_DOCKER", "VIGIL_COMPOSE", "VIGIL_BASE_IMAGE"} - env.keys()
    if missing:
        raise RuntimeError(f"scripts/docker-setup.sh did not report {sorted(missing)}: {proc.stdout!r}")
    return env


def image_tag(service: str) -> str:
    return f"{os.environ.get('VIGIL_IMAGE_PREFIX', 'vigil/')}{service}:{os.environ.get('VIGIL_IMAGE_TAG', 'dev')}"


def run_docker(setup: dict[str, str], *args: str, timeout: float = 120, check: bool = True) -> str:
    proc = subprocess.run([setup["VIGIL_DOCKER"], *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def image_exists(setup: dict[str, str], tag: str) -> bool:
    proc = subprocess.run([setup["VIGIL_DOCKER"], "image", "inspect", tag], capture_output=True, timeout=60)
    return proc.returncode == 0


def build_image(setup: dict[str, str], service: str) -> str:
    """Build services/<service>/Dockerfile with scripts/build-images.sh (a warm rebuild takes seconds).

    VIGIL_SKIP_BUILD=1 reuses an existing image (scripts/test.sh builds every image before pytest).
    """
    tag = image_tag(service)
    if os.environ.get("VIGIL_SKIP_BUILD") == "1" and image_exists(setup, tag):
        return tag
    env = {**os.environ, **setup, "DOCKER_BUILDKIT": "1"}
    started = time.monotonic()
    proc = subprocess.run(
        [str(REPO / "scripts" / "build-images.sh"), service],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"building {tag} failed ({proc.returncode}):\n{proc.stderr[-6000:]}")
    logger.info("built %s in %.0f s", tag, time.monotonic() - started)
    return tag


# ---- containers -------------------------------------------------------------------------------


def http_get(port: int, path: str, timeout: float = 3.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def container_state(container: DockerContainer) -> dict[str, Any]:
    wrapped = container.get_wrapped_container()
    wrapped.reload()
    return wrapped.attrs["State"]


def container_logs(container: DockerContainer) -> str:
    out, err = container.get_logs()
    return (out + err).decode(errors="replace")[-6000:]


def wait_http_ready(container: DockerContainer, port: int, timeout: float = READY_TIMEOUT_S) -> float:
    """Poll /readyz on 127.0.0.1:port until 200; fail early (with logs) if the container exits."""
    started = time.monotonic()
    last: object = None
    while time.monotonic() - started < timeout:
        state = container_state(container)
        if not state.get("Running"):
            raise AssertionError(f"container exited ({state.get('ExitCode')}):\n{container_logs(container)}")
        try:
            status, _ = http_get(port, "/readyz")
            if status == 200:
                return time.monotonic() - started
            last = status
        except OSError as exc:  # not listening yet
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"/readyz not 200 after {timeout:.0f} s (last: {last}):\n{container_logs(container)}")


def wait_docker_healthy(container: DockerContainer, timeout: float = 60.0) -> None:
    """The image's own HEALTHCHECK must turn the container `healthy`."""
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        health = container_state(container).get("Health")
        if health is None:
            raise AssertionError("image has no HEALTHCHECK")
        status = health.get("Status")
        if status == "healthy":
            return
        time.sleep(1.0)
    raise AssertionError(f"docker health is {status!r} after {timeout:.0f} s:\n{container_logs(container)}")


@contextlib.contextmanager
def service_container(image: str, container_port: int, env: dict[str, str] | None = None) -> Iterator[tuple]:
    """Start `image` alone, its port published on a random 127.0.0.1 port; yield (container, host_port).

    The container is force-removed on exit, whatever happened.
    """
    container = DockerContainer(image).with_name(f"vigil-test-{uuid.uuid4().hex[:10]}")
    # A random host port bound to 127.0.0.1 only (docker-py's (ip, None) form; with_bind_ports has no ip).
    container.ports[f"{container_port}/tcp"] = ("127.0.0.1", None)
    for key, value in (env or {}).items():
        container.with_env(key, value)
    container.start()
    try:
        host_port = container.get_exposed_port(container_port)
        yield container, host_port
    finally:
        container.stop()


# ---- wire protocol ----------------------------------------------------------------------------


@contextlib.contextmanager
def ws_client(port: int) -> Iterator[ClientConnection]:
    with connect(f"ws://127.0.0.1:{port}", max_size=WS_MAX_SIZE, open_timeout=10) as ws:
        yield ws


def rpc(ws: ClientConnection, message: dict[str, Any] | str, timeout: float = 60.0) -> dict[str, Any]:
    ws.send(message if isinstance(message, str) else json.dumps(message))
    reply = json.loads(ws.recv(timeout=timeout))
    assert isinstance(reply, dict), reply
    return reply


def new_request_id(label: str = "r") -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


def load_samples(service: str) -> ModuleType:
    """tests/<service>/samples.py: valid_data() and bad_inputs(), per docs/CONTRACTS.md."""
    path = REPO / "tests" / service / "samples.py"
    if not path.is_file():
        raise AssertionError(f"{path.relative_to(REPO)} is missing (required by docs/CONTRACTS.md)")
    spec = importlib.util.spec_from_file_location(f"vigil_samples_{service}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compose_command(setup: dict[str, str]) -> list[str]:
    return shlex.split(setup["VIGIL_COMPOSE"])
