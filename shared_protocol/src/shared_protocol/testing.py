"""Test a model backend class in-process, without sockets (like Starlette's TestClient).

    from shared_protocol.testing import BackendTestClient

    def test_my_model():
        with BackendTestClient(MyBackend()) as client:
            assert client.infer({"x": 2})["prediction"] > 0

The client runs the real protocol path — the codec, admission and byte budgets, the collector and
its batches, the worker thread, the error mapping, the reply encoding — on a private event loop,
and returns what a WebSocket client would receive (decoded JSON).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from typing import Any

from .backend import UNHEALTHY, BaseModelBackend, ModelInitializationError
from .errors import ErrorCode, ProtocolError
from .server import Peer, encode_reply


class BackendTestClient:
    def __init__(self, backend: BaseModelBackend, *, owner: str = "test-client", timeout: float = 60.0) -> None:
        self.backend = backend
        self.timeout = timeout
        self._owner = owner
        self._ids = itertools.count()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="backend-test-client", daemon=True)
        self._batch_loop: asyncio.Task | None = None
        self._peer: Peer | None = None

    # ---- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> BackendTestClient:
        self._thread.start()
        self._call(self._open())
        if self.backend.status == UNHEALTHY:
            self.__exit__(None, None, None)
            raise ModelInitializationError(self.backend.init_error or "initialize_model failed")
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._call(self._close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    async def _open(self) -> None:
        self._batch_loop = await self.backend.open_runtime()
        await self.backend._initialize()
        self._peer = Peer(websocket=None, owner=self._owner, authenticated=False)

    async def _close(self) -> None:
        init_done = asyncio.get_running_loop().create_future()
        init_done.set_result(None)
        await self.backend._shutdown(init_done)
        if self._batch_loop is not None:
            self._batch_loop.cancel()

    def _call(self, coro) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(self.timeout)

    # ---- the protocol ------------------------------------------------------------------------

    def send(self, frame: str | dict[str, Any]) -> dict[str, Any]:
        """One frame in, its one reply out, exactly as a WebSocket client would decode it."""
        text = frame if isinstance(frame, str) else json.dumps(frame)
        reply = self._call(self.backend._server.reply_to(self._peer, text))
        return json.loads(encode_reply(reply))

    def request(self, data: dict[str, Any], *, request_id: str | None = None) -> dict[str, Any]:
        """The reply message (inference_response or error) to an inference_request."""
        request_id = request_id or f"test-{next(self._ids)}"
        return self.send({"type": "inference_request", "request_id": request_id, "data": data})

    def infer(self, data: dict[str, Any]) -> dict[str, Any]:
        """The result `data` of a successful request; an error reply raises ProtocolError with its code."""
        reply = self.request(data)
        if reply["type"] == "error":
            raise ProtocolError(reply["error"], code=ErrorCode(reply["code"]), request_id=reply.get("request_id"))
        return reply["data"]

    def health_check(self) -> dict[str, Any]:
        return self.send({"type": "health_check"})
