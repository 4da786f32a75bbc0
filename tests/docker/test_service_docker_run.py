"""Each service's README `docker run` (section "Deploy this service alone") works as written.

The command is taken verbatim from the README's first ```sh block in that section and run by bash;
the only inputs are the two variables the command itself offers (VIGIL_RUN_NAME, VIGIL_RUN_PORT),
so parallel tests and a running stack do not collide. Then: the hardening flags really reached
the container, /readyz answers, one `health_check` over WebSocket gets its `pong`, the logs show no
write to the read-only root, and the container is removed.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from dockerlib import (
    MAIN_PORT,
    MODEL_SERVICE_PORTS,
    READY_TIMEOUT_S,
    REPO,
    http_get,
    new_request_id,
    rpc,
    run_docker,
    ws_client,
)

PORTS = {"main_backend": MAIN_PORT, **MODEL_SERVICE_PORTS}
SECTION = "## Deploy this service alone"
# What a read-only root or a missing home would print if an image still wrote outside /tmp.
WRITE_FAILURES = re.compile(r"Read-only file system|Permission denied|is not writable|Traceback")


def readme_command(service: str) -> str:
    text = (REPO / "services" / service / "README.md").read_text()
    assert SECTION in text, f"services/{service}/README.md has no '{SECTION}' section"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    commands = [b for b in blocks if b.lstrip().startswith("docker run")]
    assert commands, f"services/{service}/README.md: no ```sh docker run block in '{SECTION}'"
    return commands[0]


def container_logs(setup: dict[str, str], name: str) -> str:
    """stdout and stderr of the container (the services log to stderr)."""
    proc = subprocess.run([setup["VIGIL_DOCKER"], "logs", name], capture_output=True, text=True, timeout=60)
    return proc.stdout + proc.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_readyz(port: int, service: str, name: str, setup: dict[str, str]) -> tuple[int, dict]:
    """Until /readyz answers 200 (model backends) or answers at all (the gateway alone: its JSON says
    how degraded it is; 200 or 503 depends on which backends are `required` in config/models.yaml)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    last: object = None
    while time.monotonic() < deadline:
        running = run_docker(setup, "inspect", "-f", "{{.State.Running}}", name, check=False).strip()
        if running != "true":
            logs = container_logs(setup, name)
            raise AssertionError(f"{service} container stopped:\n{logs[-4000:]}")
        try:
            status, body = http_get(port, "/readyz")
            if status == 200 or (service == "main_backend" and status == 503):
                return status, json.loads(body)
            last = status
        except OSError as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"{service}: /readyz not ready after {READY_TIMEOUT_S:.0f} s (last: {last})")


@pytest.mark.parametrize("service", list(PORTS))
def test_readme_docker_run(docker_env, service_image, service):
    command = readme_command(service)
    image = service_image(service)  # builds (or reuses) vigil/<service>:dev, the tag the README names
    assert image in command, f"README command does not run {image}"
    name = f"vigil-runtest-{service.replace('_', '-')}-{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = {**os.environ, "VIGIL_RUN_NAME": name, "VIGIL_RUN_PORT": str(port)}
    env["PATH"] = f"{Path(docker_env['VIGIL_DOCKER']).parent}{os.pathsep}{env.get('PATH', '')}"
    try:
        proc = subprocess.run(["bash", "-euc", command], env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"README command failed:\n{command}\n{proc.stderr}"

        host_config = json.loads(run_docker(docker_env, "inspect", "-f", "{{json .HostConfig}}", name))
        assert host_config["ReadonlyRootfs"] is True
        assert host_config["CapDrop"] == ["ALL"]
        assert any(opt.startswith("no-new-privileges") for opt in host_config["SecurityOpt"])
        assert "/tmp" in host_config["Tmpfs"]
        assert host_config["Memory"] > 0 and host_config["NanoCpus"] > 0 and host_config["PidsLimit"] > 0
        assert host_config["Init"] is True
        bindings = host_config["PortBindings"][f"{PORTS[service]}/tcp"]
        assert bindings == [{"HostIp": "127.0.0.1", "HostPort": str(port)}]

        status, ready = wait_readyz(port, service, name, docker_env)
        with ws_client(port) as ws:
            pong = rpc(ws, {"type": "health_check", "request_id": new_request_id("h")})
        assert pong["type"] == "pong", pong
        if service == "main_backend":
            # Alone, its backends' DNS names do not resolve: up and answering, but not ready.
            assert ready.get("overall") in ("degraded", "unhealthy"), (status, ready)
            assert pong["status"] in ("degraded", "unhealthy"), pong
        else:
            assert pong["status"] == "healthy", pong

        logs = container_logs(docker_env, name)
        assert not WRITE_FAILURES.search(logs), f"{service} logged a failure under --read-only:\n{logs[-4000:]}"
    finally:
        run_docker(docker_env, "rm", "-f", name, check=False)
