"""Test helpers: run servers on 127.0.0.1 (in-process tasks or real subprocesses) and talk to them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

REPO = Path(__file__).resolve().parents[2]
CONTROLLED_BACKEND = REPO / "tests" / "support" / "controlled_backend.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def serving(server, timeout: float = 10.0):
    """Run a BaseModelBackend or MainBackend in this loop; yield its ws:// URL; stop it afterwards."""
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + timeout
    while server.bound_port is None:
        if task.done():
            task.result()
        if time.monotonic() > deadline:
            raise TimeoutError("server did not start listening")
        await asyncio.sleep(0.005)
    try:
        yield f"ws://127.0.0.1:{server.bound_port}"
    finally:
        server.stop()
        await asyncio.wait_for(task, timeout=timeout)


async def wait_ready(backend, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while backend.status == "loading":
        if time.monotonic() > deadline:
            raise TimeoutError("model did not finish loading")
        await asyncio.sleep(0.005)


async def rpc(ws, message: dict[str, Any] | str, timeout: float = 10.0) -> dict[str, Any]:
    await ws.send(message if isinstance(message, str) else json.dumps(message))
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_http(url: str, status: int = 200, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            code, _ = http_get(url, timeout=1.0)
            if code == status:
                return
            last = code
        except OSError as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer {status} within {timeout}s (last: {last})")


class BackendProcess:
    """The controlled test backend as a real process (so it can crash or be SIGTERMed)."""

    def __init__(self, port: int, *args: str) -> None:
        self.port = port
        self.args = args
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> BackendProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, str(CONTROLLED_BACKEND), "--host", "127.0.0.1", "--port", str(self.port), *self.args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if wait:
            wait_http(f"http://127.0.0.1:{self.port}/readyz")
        return self

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)

    def output(self) -> str:
        assert self.proc is not None
        return self.proc.stdout.read() if self.proc.poll() is not None else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()

    def __enter__(self) -> BackendProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


async def connect_ws(url: str, **kwargs):
    return await connect(url, open_timeout=5, **kwargs)
