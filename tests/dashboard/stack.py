"""The real stack for the browser test: the fatigue (torch engine), emotion and eeg backends and
the gateway, each a server on an ephemeral 127.0.0.1 port, all on one event loop in a thread (the
test itself drives the browser synchronously)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from pathlib import Path

from support.net import serving, wait_ready
from vigil_eeg.backend import EEGBackend
from vigil_eeg.settings import EEGSettings
from vigil_emotion.backend import EmotionBackend
from vigil_emotion.settings import EmotionSettings
from vigil_fatigue.backend import FatigueBackend
from vigil_fatigue.settings import FatigueSettings
from vigil_main_backend.config import Config
from vigil_main_backend.gateway import MainBackend

INPUTS = {"fatigue": ["image"], "emotion": ["image"], "eeg": ["eeg"]}


class StackThread(threading.Thread):
    def __init__(self, fatigue_weights: Path, emotion_model: Path) -> None:
        super().__init__(name="vigil-stack", daemon=True)
        self.fatigue_settings = FatigueSettings(engine="torch", torch_weights_dir=str(fatigue_weights), device="cpu")
        self.emotion_settings = EmotionSettings(
            model_dir=str(emotion_model),
            device="cpu",
            blazeface_weights=str(fatigue_weights / "face_detection_short_range.safetensors"),
        )
        self.url: str | None = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the test through start_and_wait
            self.error = exc
            self._ready.set()

    async def _main(self) -> None:
        backends = {
            "fatigue": FatigueBackend("127.0.0.1", 0, settings=self.fatigue_settings),
            "emotion": EmotionBackend("127.0.0.1", 0, settings=self.emotion_settings),
            "eeg": EEGBackend("127.0.0.1", 0, settings=EEGSettings()),
        }
        async with contextlib.AsyncExitStack() as stack:
            ports = {}
            for name, backend in backends.items():
                url = await stack.enter_async_context(serving(backend))
                ports[name] = int(url.rsplit(":", 1)[1])
            for backend in backends.values():
                await wait_ready(backend, timeout=180)
                if backend.status != "healthy":
                    raise RuntimeError(f"{backend.model_name} did not load: {backend.status}")
            config = Config.model_validate(
                {
                    "main_backend": {"host": "127.0.0.1", "port": 0, "health_interval": 1.0},
                    "model_backends": {
                        name: {"host": "127.0.0.1", "port": port, "request_timeout": 30, "inputs": INPUTS[name]}
                        for name, port in ports.items()
                    },
                }
            )
            gateway = MainBackend(config)
            self.url = await stack.enter_async_context(serving(gateway))
            deadline = time.monotonic() + 30
            while not all(client.ready for client in gateway.clients.values()):
                if time.monotonic() > deadline:
                    raise TimeoutError("gateway did not connect to the backends")
                await asyncio.sleep(0.05)
            self._ready.set()
            await asyncio.to_thread(self._halt.wait)

    def start_and_wait(self, timeout: float = 240.0) -> str:
        self.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the stack did not start")
        if self.error is not None:
            raise self.error
        return self.url

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=60)


class BareGatewayThread(StackThread):
    """A gateway with no backend (for connection-level tests), auth on with `api_tokens`."""

    def __init__(self, api_tokens: tuple[str, ...]) -> None:
        threading.Thread.__init__(self, name="vigil-gateway", daemon=True)
        self.api_tokens = api_tokens
        self.url = None
        self.error = None
        self._ready = threading.Event()
        self._halt = threading.Event()

    async def _main(self) -> None:
        config = Config.model_validate({"main_backend": {"host": "127.0.0.1", "port": 0}, "model_backends": {}})
        async with serving(MainBackend(config, api_tokens=self.api_tokens)) as url:
            self.url = url
            self._ready.set()
            await asyncio.to_thread(self._halt.wait)
