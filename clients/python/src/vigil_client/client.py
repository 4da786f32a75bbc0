"""VigilClient: one WebSocket connection to the main backend, many requests in flight.

Every request carries its own `request_id`; one reader task routes each reply to the waiting
caller, so replies may come back in any order. At most `max_in_flight` requests are outstanding:
further calls wait for a slot (back-pressure), they are not queued on the server. A dropped
connection fails the requests in flight with `Unavailable` (they are not resent: an analyze
frame advances per-session state on the server, so a resend could count it twice); the next
request reconnects.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from .errors import ProtocolViolation, Timeout, Unauthorized, Unavailable, VigilError, error_from_reply

logger = logging.getLogger(__name__)

DEFAULT_URL = "ws://127.0.0.1:8765"
DEFAULT_MAX_SIZE = 16 * 1024 * 1024  # the server's default message limit


@dataclass
class AnalyzeResult:
    """An `analyze_response`: per-backend results and errors, and the fused state when present."""

    request_id: str
    results: dict[str, Any]
    errors: dict[str, Any]
    fused: dict[str, Any] | None
    elapsed_ms: float | None
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_reply(cls, reply: dict[str, Any]) -> AnalyzeResult:
        data = reply.get("data") if isinstance(reply.get("data"), dict) else {}
        return cls(
            request_id=reply.get("request_id"),
            results=data.get("results") or {},
            errors=data.get("errors") or {},
            fused=data.get("fused"),
            elapsed_ms=data.get("elapsed_ms"),
            raw=reply,
        )


def image_field(image: bytes | str) -> str:
    """JPEG/PNG bytes -> base64 text; text is taken as base64 already (optionally a data: URL)."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(image)).decode("ascii")
    if isinstance(image, str):
        return image
    raise TypeError(f"image must be encoded JPEG/PNG bytes or base64 text, not {type(image).__name__}")


class VigilClient:
    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        max_in_flight: int = 8,
        request_timeout: float = 30.0,
        open_timeout: float = 10.0,
        reconnect: bool = True,
        max_reconnect_attempts: int = 5,
        reconnect_interval: float = 0.5,
        max_size: int | None = DEFAULT_MAX_SIZE,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.url = url
        self.token = token if token is not None else os.environ.get("VIGIL_API_TOKEN") or None
        self.max_in_flight = max_in_flight
        self.request_timeout = request_timeout
        self.open_timeout = open_timeout
        self.reconnect = reconnect
        self.max_reconnect_attempts = max_reconnect_attempts
        self.reconnect_interval = reconnect_interval
        self.max_size = max_size
        self.reconnects = 0
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task | None = None
        self._pending: dict[str, asyncio.Future] = {}
        self._slots = asyncio.Semaphore(max_in_flight)
        self._connect_lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self._prefix = base64.urlsafe_b64encode(os.urandom(6)).decode()
        self._closed = False
        self._ever_connected = False

    # ---- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> VigilClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._ws is not None and self._reader is not None and not self._reader.done()

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def connect(self) -> None:
        async with self._connect_lock:
            if self.connected:
                return
            if self._closed:
                raise Unavailable("client is closed")
            attempts = 1 + (self.max_reconnect_attempts if self.reconnect and self._ever_connected else 0)
            last: Exception | None = None
            for attempt in range(attempts):
                if attempt:
                    await asyncio.sleep(min(8.0, self.reconnect_interval * 2 ** (attempt - 1)))
                try:
                    await self._open()
                    return
                except Unauthorized:
                    raise
                except (TimeoutError, OSError, WebSocketException, Unavailable) as exc:  # 503 at the cap: retry
                    last = exc
                    logger.debug("connect to %s failed (attempt %d): %s", self.url, attempt + 1, exc)
            raise Unavailable(f"cannot connect to {self.url}: {last}") from last

    async def _open(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        try:
            ws = await connect(
                self.url,
                additional_headers=headers,
                open_timeout=self.open_timeout,
                max_size=self.max_size,
                compression=None,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status == 401:
                raise Unauthorized(f"{self.url} refused the handshake: 401 (missing or wrong token)") from exc
            raise Unavailable(f"{self.url} refused the handshake with HTTP {status}") from exc
        if self._ever_connected:
            self.reconnects += 1
        self._ever_connected = True
        self._ws = ws
        self._reader = asyncio.create_task(self._read_loop(ws), name="vigil-client-reader")

    async def close(self) -> None:
        self._closed = True
        ws, reader = self._ws, self._reader
        self._ws = None
        if ws is not None:
            await ws.close()
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        self._fail_pending(Unavailable("client closed"))

    # ---- requests ----------------------------------------------------------------------------

    async def request(self, message_type: str, data: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
        """Send one message and return its reply; an `error` reply raises the VigilError of its code."""
        async with self._slots:
            if not self.connected:
                await self.connect()
            request_id = f"{self._prefix}-{next(self._ids)}"
            message: dict[str, Any] = {"type": message_type, "request_id": request_id, **fields}
            if data is not None:
                message["data"] = data
            future = asyncio.get_running_loop().create_future()
            self._pending[request_id] = future
            try:
                try:
                    await self._ws.send(json.dumps(message, allow_nan=False))
                except ConnectionClosed as exc:
                    raise Unavailable(f"connection lost while sending: {exc}", request_id=request_id) from exc
                try:
                    reply = await asyncio.wait_for(future, self.request_timeout)
                except TimeoutError:
                    raise Timeout(
                        f"no reply within {self.request_timeout:g} s (client-side timeout)", request_id=request_id
                    ) from None
            finally:
                self._pending.pop(request_id, None)
        if reply.get("type") == "error":
            raise error_from_reply(reply)
        return reply

    async def analyze(
        self,
        *,
        image: bytes | str | None = None,
        eeg: dict[str, Any] | None = None,
        session_id: str | None = None,
        timestamp: float | None = None,
        reset_session: bool = False,
        **extra: Any,
    ) -> AnalyzeResult:
        """One frame and/or EEG chunk to every backend that uses it (fatigue, emotion, eeg)."""
        data: dict[str, Any] = dict(extra)
        if image is not None:
            data["image"] = image_field(image)
        if eeg is not None:
            data["eeg"] = eeg
        if session_id is not None:
            data["session_id"] = session_id
        if timestamp is not None:
            data["timestamp"] = timestamp
        if reset_session:
            data["reset_session"] = True
        return AnalyzeResult.from_reply(await self.request("analyze", data))

    async def infer(self, model: str, data: dict[str, Any]) -> dict[str, Any]:
        """`inference_request` to one backend by name; returns the reply's `data`."""
        return (await self.request("inference_request", data, model=model))["data"]

    async def health(self) -> dict[str, Any]:
        """`health_check` -> the `pong` (status and, on the main backend, every backend's state)."""
        return await self.request("health_check")

    # ---- reading -----------------------------------------------------------------------------

    async def _read_loop(self, ws: ClientConnection) -> None:
        error: VigilError = Unavailable("connection closed")
        try:
            async for frame in ws:
                try:
                    reply = json.loads(frame)
                except ValueError:
                    logger.warning("server sent a frame that is not JSON: %.80r", frame)
                    continue
                future = self._pending.get(reply.get("request_id")) if isinstance(reply, dict) else None
                if future is None:
                    logger.warning("reply for no pending request: %.200r", reply)
                    continue
                if not future.done():
                    future.set_result(reply)
        except ConnectionClosed as exc:
            error = Unavailable(f"connection closed: {exc}")
        except Exception as exc:  # never leave callers hanging on a reader that died
            error = ProtocolViolation(f"reader failed: {type(exc).__name__}: {exc}")
            logger.exception("vigil client reader failed")
        finally:
            if self._ws is ws:
                self._ws = None
            self._fail_pending(error)

    def _fail_pending(self, error: VigilError) -> None:
        for request_id, future in list(self._pending.items()):
            if not future.done():
                future.set_exception(type(error)(error.message, code=error.code, request_id=request_id))
