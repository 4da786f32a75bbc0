"""A real MainBackend in front of controlled test backends, all in this event loop on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import time

from support.controlled_backend import ControlledBackend
from support.net import free_port, serving, wait_ready
from vigil_main_backend.config import Config
from vigil_main_backend.gateway import MainBackend

INPUTS = {"fatigue": ["image"], "emotion": ["image"], "eeg": ["eeg"]}


def gateway_config(ports: dict[str, int], gateway_port: int = 0, main: dict | None = None, **backend_extra) -> Config:
    spec = {
        "main_backend": {"host": "127.0.0.1", "port": gateway_port, "health_interval": 0.5, **(main or {})},
        "model_backends": {
            name: {
                "host": "127.0.0.1",
                "port": port,
                "reconnect_interval": 0.2,
                "max_reconnect_attempts": 3,
                "request_timeout": 5,
                "inputs": INPUTS[name],
                **backend_extra,
            }
            for name, port in ports.items()
        },
    }
    return Config.model_validate(spec)


async def wait_connected(gateway: MainBackend, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(client.ready for client in gateway.clients.values()):
        if time.monotonic() > deadline:
            raise TimeoutError("gateway did not connect to its backends")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def controlled_stack(
    names=("fatigue", "emotion", "eeg"), gateway_port: int = 0, api_tokens: tuple[str, ...] = (), **backend_extra
):
    """Yields (gateway ws URL, gateway, {name: ControlledBackend}); `api_tokens` turns auth on."""
    backends = {name: ControlledBackend() for name in names}
    async with contextlib.AsyncExitStack() as stack:
        ports = {}
        for name, backend in backends.items():
            url = await stack.enter_async_context(serving(backend))
            await wait_ready(backend)
            ports[name] = int(url.rsplit(":", 1)[1])
        gateway = MainBackend(gateway_config(ports, gateway_port, **backend_extra), api_tokens=api_tokens)
        url = await stack.enter_async_context(serving(gateway))
        await wait_connected(gateway)
        yield url, gateway, backends


__all__ = ["controlled_stack", "free_port", "gateway_config", "wait_connected"]
