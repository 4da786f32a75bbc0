"""BackendClient: one persistent connection from the main backend to one model backend.

- Requests are matched to replies by `request_id` (the client makes its own ids, so callers'
  ids can never collide on the shared connection).
- `request()` never raises for backend trouble: it always returns a `Reply`, and every request gets
  exactly one — the backend's answer, `timeout` after `request_timeout`, `overloaded` when too many
  are in flight, or `unavailable` at once when the connection is not up or drops mid-request.
- `submit()` is the same without waiting: the one `Reply` goes to a callback, called from
  data_received (direct delivery), the deadline timer or the connection's loss — the gateway's
  relay path runs without a task per request; `request()` is `submit()` awaited.
- Reconnects with exponential backoff capped at `reconnect_interval`; after
  `max_reconnect_attempts` failures the state is `down` and one attempt is made per health tick.
- Sends `health_check` every `health_interval` and keeps the backend's reported status.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import websockets
from websockets.asyncio.client import ClientConnection, connect

from . import messages
from .batches import BATCH_SUBPROTOCOL, is_batch, split_batch, takes_batches
from .deadlines import Deadlines
from .direct import DirectClientConnection
from .errors import BadRequestError, ErrorCode
from .limits import DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_PING_INTERVAL, DEFAULT_PING_TIMEOUT, DEFAULT_REQUEST_TIMEOUT
from .outbox import outbox_for

logger = logging.getLogger(__name__)

_ENVELOPE_ENCODER = msgspec.json.Encoder()
_MSGPACK_ENVELOPE_ENCODER = msgspec.msgpack.Encoder()


def _is_map(raw: msgspec.Raw, codec: str) -> bool:
    first = memoryview(raw)[:1].tobytes()
    if codec == messages.MSGPACK:
        return bool(first) and (0x80 <= first[0] <= 0x8F or first[0] in (0xDE, 0xDF))
    return first == b"{"


def resolver(future: asyncio.Future) -> Callable[[Any], None]:
    """A reply callback that gives `future` its result, unless its waiter gave up (cancelled):
    how `submit`-style calls are awaited."""

    def resolve(value: Any) -> None:
        if not future.done():
            future.set_result(value)

    return resolve


CONNECTING = "connecting"
CONNECTED = "connected"
RECONNECTING = "reconnecting"
DOWN = "down"
CLOSED = "closed"


class Reply:
    """The one answer to one request: `data` on success, else `code` + `error`.

    A backend's result may arrive undecoded (`data_raw`, in the request's `codec`): `data` decodes it
    on first use, and a relay that never looks at it forwards `data_raw` as it came.
    """

    __slots__ = (
        "ok",
        "_data",
        "code",
        "error",
        "latency_s",
        "timing",
        "backend_request_id",
        "data_raw",
        "codec",
        "model_version",
    )

    def __init__(
        self,
        ok: bool,
        data: dict[str, Any] | None = None,
        code: str | None = None,
        error: str | None = None,
        latency_s: float = 0.0,
        timing: dict[str, float] | None = None,  # backend-reported queue_ms / compute_ms
        backend_request_id: str | None = None,  # the id this client used on the backend connection
        data_raw: msgspec.Raw | None = None,
        codec: str = messages.JSON,
        model_version: str | None = None,  # the model version that computed the result
    ) -> None:
        self.ok = ok
        self.model_version = model_version
        self._data = data
        self.code = code
        self.error = error
        self.latency_s = latency_s
        self.timing = timing
        self.backend_request_id = backend_request_id
        self.data_raw = data_raw
        self.codec = codec

    @property
    def data(self) -> dict[str, Any] | None:
        if self._data is None and self.data_raw is not None:
            self._data = messages.decode_value(self.data_raw, self.codec)
        return self._data

    @data.setter
    def data(self, value: dict[str, Any] | None) -> None:
        self._data = value

    @property
    def untouched_raw(self) -> msgspec.Raw | None:
        """`data` exactly as the backend sent it, when nobody decoded (and maybe changed) it."""
        return self.data_raw if self._data is None else None

    def __repr__(self) -> str:
        return f"Reply(ok={self.ok}, code={self.code!r}, error={self.error!r}, latency_s={self.latency_s:.4f})"

    @classmethod
    def failure(cls, code: ErrorCode | str, error: str, latency_s: float = 0.0) -> Reply:
        return cls(False, code=code.value if isinstance(code, ErrorCode) else code, error=error, latency_s=latency_s)


@dataclass(slots=True)
class BackendStatus:
    state: str = CONNECTING
    backend_status: str | None = None  # `status` from the backend's last pong
    model: dict[str, Any] | None = None
    last_latency_ms: float | None = None
    last_error: str | None = None
    last_pong_at: float | None = None
    connected_since: float | None = None
    reconnects: int = 0


class BackendClient:
    def __init__(
        self,
        name: str,
        url: str,
        *,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        reconnect_interval: float = 5.0,
        max_reconnect_attempts: int = 10,
        health_interval: float = 10.0,
        max_in_flight: int = 256,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        open_timeout: float = 5.0,
        initial_backoff: float = 0.1,
        token: str | None = None,
        batch_frames: bool = True,
    ) -> None:
        self.name = name
        # Offer batch frames (shared_protocol.batches) to the backend; it may decline.
        self.batch_frames = batch_frames
        self.url = url
        self._token = token  # presented to the backend at the handshake when set
        self.request_timeout = request_timeout
        self.reconnect_interval = reconnect_interval
        self.max_reconnect_attempts = max_reconnect_attempts
        self.health_interval = health_interval
        self.max_in_flight = max_in_flight
        self.max_message_size = max_message_size
        self.open_timeout = open_timeout
        self.initial_backoff = min(initial_backoff, reconnect_interval)
        self.status = BackendStatus()
        self._connection: ClientConnection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the connection's, set when it is up
        # request id -> (on_reply, sent at, timeout): the requests in flight on the connection.
        self._pending: dict[str, tuple[Callable[[Reply], None], float, float]] = {}
        self._deadlines = Deadlines(self._expire)  # one loop timer for every request's timeout
        self._sending: set[asyncio.Task] = set()  # frames waiting for a full write buffer
        self._pong_waiter: asyncio.Future | None = None
        self._runner: asyncio.Task | None = None
        self._wake = asyncio.Event()  # cuts a backoff sleep short (a health tick while down)
        self._ids = itertools.count()
        self._prefix = uuid.uuid4().hex[:8]
        # Error replies by code, refusals and timeouts included (the gateway's per-replica figures).
        self.errors: Counter[str] = Counter()

    # ---- lifecycle ---------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.status.state == CONNECTED

    @property
    def ready(self) -> bool:
        return self.connected and self.status.backend_status == "healthy"

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name=f"backend-client-{self.name}")

    async def close(self) -> None:
        self.status.state = CLOSED
        connection = self._connection  # the runner clears it when cancelled
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        if connection is not None:
            await connection.close()
        self._fail_pending(ErrorCode.UNAVAILABLE, f"backend {self.name!r}: client closed")

    # ---- requests ----------------------------------------------------------------------------

    def submit(
        self,
        data: dict[str, Any] | None,
        *,
        on_reply: Callable[[Reply], None],
        timeout: float | None = None,
        data_raw: msgspec.Raw | bytes | str | None = None,
        data_json: str | None = None,
        owner: str | None = None,
        trace_id: str | None = None,
        codec: str = messages.JSON,
    ) -> str | None:
        """Send one request without waiting; `on_reply(reply)` is called exactly once: with the
        backend's answer (matched in data_received), `timeout` after `timeout` seconds (default
        `request_timeout`), or `unavailable` when the connection drops. Returns the request's id
        on this connection, or None when it could not be sent (not connected, too many in flight,
        not encodable): `on_reply` has then been called already, with why.

        `data_raw`: `data` already encoded (JSON text, or MessagePack for codec msgpack), e.g.
        the client's own, relayed verbatim; `data_json` is its former name. `owner`: whose
        sessions the request may touch (the gateway's name for its client), sent as `session_owner`."""
        connection = self._connection
        if connection is None or not self.connected:
            reason = self.status.last_error or self.status.state
            refusal = Reply.failure(ErrorCode.UNAVAILABLE, f"backend {self.name!r} is not connected ({reason})")
        elif len(self._pending) >= self.max_in_flight:
            refusal = Reply.failure(
                ErrorCode.OVERLOADED, f"backend {self.name!r} has {self.max_in_flight} requests in flight"
            )
        elif codec == messages.MSGPACK and connection.subprotocol not in messages.BINARY_SUBPROTOCOLS:
            refusal = Reply.failure(
                ErrorCode.UNAVAILABLE, f"backend {self.name!r} does not speak {messages.BINARY_SUBPROTOCOL}"
            )
        else:
            request_id = f"{self._prefix}-{next(self._ids)}"
            try:
                frame = self._request_frame(
                    request_id, data, data_raw if data_raw is not None else data_json, owner, trace_id, codec
                )
                refusal = None
            except (TypeError, ValueError) as exc:
                refusal = Reply.failure(ErrorCode.BAD_REQUEST, f"data cannot be encoded: {exc}")
        if refusal is not None:
            self.errors[refusal.code] += 1
            on_reply(refusal)
            return None
        limit = self.request_timeout if timeout is None else timeout
        self._pending[request_id] = (on_reply, time.monotonic(), limit)
        self._deadlines.add(request_id, limit)
        text = codec != messages.MSGPACK
        if not outbox_for(connection).send_nowait(frame, text=text):
            # The write buffer is full: the frame waits for it in a task. The request already
            # counts as in flight (max_in_flight bounds these) and its deadline runs.
            task = self._loop.create_task(self._send_when_writable(connection, request_id, frame, text))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        return request_id

    async def request(
        self,
        data: dict[str, Any] | None,
        *,
        timeout: float | None = None,
        data_raw: msgspec.Raw | bytes | str | None = None,
        data_json: str | None = None,
        owner: str | None = None,
        trace_id: str | None = None,
        codec: str = messages.JSON,
    ) -> Reply:
        """`submit`, awaited: the one Reply (never raises for backend trouble)."""
        future: asyncio.Future = (self._loop or asyncio.get_running_loop()).create_future()
        request_id = self.submit(
            data,
            on_reply=resolver(future),
            timeout=timeout,
            data_raw=data_raw,
            data_json=data_json,
            owner=owner,
            trace_id=trace_id,
            codec=codec,
        )
        if request_id is None:
            return future.result()
        try:
            return await future
        except asyncio.CancelledError:
            self._forget(request_id)
            raise

    async def _send_when_writable(
        self, connection: ClientConnection, request_id: str, frame: bytes, text: bool
    ) -> None:
        try:
            await outbox_for(connection).send(frame, text=text)
        except websockets.ConnectionClosed:
            self._settle(request_id, Reply.failure(ErrorCode.UNAVAILABLE, f"backend {self.name!r} connection closed"))

    def _settle(self, request_id: str, reply: Reply) -> None:
        """Give a pending request its one reply (no-op when it has had it)."""
        entry = self._pending.pop(request_id, None)
        if entry is None:
            return
        self._deadlines.discard(request_id)
        reply.backend_request_id = request_id
        if not reply.ok:
            self.errors[reply.code or ErrorCode.INTERNAL.value] += 1
        on_reply = entry[0]
        try:
            on_reply(reply)
        except Exception:  # a caller's bug must not reach data_received: it would close the connection
            logger.exception("backend %s: handling the reply to %s failed", self.name, request_id)

    def _forget(self, request_id: str) -> None:
        self._pending.pop(request_id, None)
        self._deadlines.discard(request_id)

    def _expire(self, request_id: str) -> None:
        entry = self._pending.get(request_id)
        if entry is not None:
            _, started, limit = entry
            self._settle(
                request_id,
                Reply.failure(
                    ErrorCode.TIMEOUT,
                    f"backend {self.name!r} did not answer within {limit:g}s",
                    time.monotonic() - started,
                ),
            )

    @staticmethod
    def _request_frame(
        request_id: str,
        data: dict[str, Any] | None,
        data_raw: msgspec.Raw | bytes | str | None,
        owner: str | None,
        trace_id: str | None,
        codec: str = messages.JSON,
    ) -> bytes:
        binary = codec == messages.MSGPACK
        envelope: dict[str, Any] = {"type": messages.INFERENCE_REQUEST, "request_id": request_id}
        if owner is not None:
            envelope["session_owner"] = owner
        if trace_id:
            envelope["trace_id"] = trace_id
        if data_raw is None:
            envelope["data"] = data
            return messages.encode_msgpack(envelope) if binary else messages.encode_bytes(envelope)
        raw = data_raw.encode("utf-8") if isinstance(data_raw, str) else data_raw
        # The envelope is this client's own ASCII id and a validated owner: encoded by msgspec, with
        # the data spliced in as it came (msgspec.Raw, JSON text or MessagePack bytes), never
        # decoded and encoded again.
        envelope["data"] = raw if isinstance(raw, msgspec.Raw) else msgspec.Raw(raw)
        return (_MSGPACK_ENVELOPE_ENCODER if binary else _ENVELOPE_ENCODER).encode(envelope)

    async def health_check(self, timeout: float | None = None) -> dict[str, Any] | None:
        """Send `health_check` and wait for the `pong` (None if not connected or no answer)."""
        connection = self._connection
        if connection is None or not self.connected:
            return None
        loop = asyncio.get_running_loop()
        if self._pong_waiter is None or self._pong_waiter.done():
            self._pong_waiter = loop.create_future()
        waiter = self._pong_waiter
        sent_at = time.monotonic()
        try:
            await connection.send(messages.encode_bytes(messages.health_check()), text=True)
            pong = await asyncio.wait_for(asyncio.shield(waiter), timeout or self.request_timeout)
        except (TimeoutError, websockets.ConnectionClosed):
            return None
        self.status.last_latency_ms = round((time.monotonic() - sent_at) * 1000, 3)
        return pong

    # ---- connection management ---------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while True:
            self.status.state = CONNECTING if self.status.reconnects == 0 and failures == 0 else RECONNECTING
            try:
                connection = await connect(
                    self.url,
                    open_timeout=self.open_timeout,
                    max_size=self.max_message_size,
                    compression=None,
                    ping_interval=DEFAULT_PING_INTERVAL,
                    ping_timeout=DEFAULT_PING_TIMEOUT,
                    additional_headers={"Authorization": f"Bearer {self._token}"} if self._token else None,
                    # Offered so binary requests can be relayed as they came, and (batch frames)
                    # the requests and replies of one loop turn share frames; JSON works either way.
                    subprotocols=self._subprotocols(),
                    create_connection=DirectClientConnection,  # replies matched from data_received
                )
            except (OSError, TimeoutError, websockets.InvalidHandshake, websockets.InvalidURI) as exc:
                failures += 1
                self.status.last_error = f"connect failed: {type(exc).__name__}: {exc}"
                if failures >= self.max_reconnect_attempts:
                    if self.status.state != DOWN:
                        logger.warning(
                            "backend %s down after %d failed attempts: %s", self.name, failures, self.status.last_error
                        )
                    self.status.state = DOWN
                    await self._sleep(self.health_interval)  # one attempt per health tick while down
                else:
                    await self._sleep(min(self.reconnect_interval, self.initial_backoff * 2 ** (failures - 1)))
                continue
            if failures or self.status.connected_since is not None:
                self.status.reconnects += 1
            failures = 0
            await self._serve_connection(connection)

    def _subprotocols(self) -> list[str]:
        if self.batch_frames and takes_batches(self.max_message_size):
            return [BATCH_SUBPROTOCOL, messages.BINARY_SUBPROTOCOL]
        return [messages.BINARY_SUBPROTOCOL]

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    def wake(self) -> None:
        """Retry a down backend now instead of at the next tick (e.g. a request arrived)."""
        self._wake.set()

    async def _serve_connection(self, connection: ClientConnection) -> None:
        self._loop = asyncio.get_running_loop()
        self._connection = connection
        self.status.state = CONNECTED
        self.status.connected_since = time.time()
        self.status.last_error = None
        logger.info("backend %s connected at %s", self.name, self.url)
        health = asyncio.create_task(self._health_loop())
        if isinstance(connection, DirectClientConnection):
            connection.on_message = self._take_frame
        try:
            # Frames direct delivery leaves to the queue (see shared_protocol.direct), in order.
            async for frame in connection:
                self._on_frame(frame)
            self.status.last_error = f"connection closed: {connection.close_code} {connection.close_reason}".strip()
        except websockets.ConnectionClosed as exc:
            self.status.last_error = f"connection lost: {exc}"
        finally:
            health.cancel()
            self._connection = None
            self.status.backend_status = None
            if self.status.state == CLOSED:
                logger.info("backend %s connection closed by the client", self.name)
            else:
                self.status.state = RECONNECTING
                logger.warning("backend %s disconnected: %s", self.name, self.status.last_error)
            self._fail_pending(ErrorCode.UNAVAILABLE, f"backend {self.name!r} disconnected mid-request")

    async def _health_loop(self) -> None:
        while True:
            pong = await self.health_check()
            if pong is None and self.connected:
                self.status.last_error = "health_check not answered"
            await asyncio.sleep(self.health_interval)

    def _take_frame(self, frame: str | bytes) -> bool:
        self._on_frame(frame)  # never waits: a reply only goes to its request's on_reply
        return True

    def _on_frame(self, frame: str | bytes) -> None:
        if is_batch(frame) and self._connection is not None and self._connection.subprotocol == BATCH_SUBPROTOCOL:
            try:
                replies = split_batch(frame)  # type: ignore[arg-type]
            except BadRequestError as exc:
                logger.warning("backend %s sent an unreadable batch frame: %s", self.name, exc)
                return
            for reply in replies:
                self._on_reply(reply)
            return
        self._on_reply(frame)

    def _on_reply(self, frame: str | bytes) -> None:
        try:
            reply = messages.parse_reply_envelope(frame)
        except BadRequestError as exc:
            logger.warning("backend %s sent an unreadable frame: %s", self.name, exc)
            return
        kind = reply.type
        if kind == messages.PONG:
            self._on_pong(frame)
            return
        request_id = reply.request_id
        entry = self._pending.get(request_id) if isinstance(request_id, str) else None
        if entry is None:
            logger.debug("backend %s: reply for unknown or expired request %r", self.name, request_id)
            return
        latency = time.monotonic() - entry[1]
        codec = messages.JSON if isinstance(frame, str) else messages.MSGPACK
        timing = reply.timing if isinstance(reply.timing, dict) else None
        if kind == messages.INFERENCE_RESPONSE and len(reply.data) and _is_map(reply.data, codec):
            version = reply.model_version if isinstance(reply.model_version, str) else None
            answer = Reply(
                True, data_raw=reply.data, codec=codec, latency_s=latency, timing=timing, model_version=version
            )
        elif kind == messages.ERROR:
            answer = Reply(False, code=str(reply.code or "internal"), error=str(reply.error), latency_s=latency)
        else:
            answer = Reply.failure(ErrorCode.INTERNAL, f"backend sent unexpected {kind!r} reply", latency)
        self._settle(request_id, answer)

    def _on_pong(self, frame: str | bytes) -> None:
        try:
            pong = messages.parse_reply(frame)
        except BadRequestError as exc:
            logger.warning("backend %s sent an unreadable pong: %s", self.name, exc)
            return
        self.status.backend_status = pong.get("status")
        self.status.model = pong.get("model")
        self.status.last_pong_at = time.time()
        if self._pong_waiter is not None and not self._pong_waiter.done():
            self._pong_waiter.set_result(pong)

    def _fail_pending(self, code: ErrorCode, error: str) -> None:
        for request_id, (_, started, _) in list(self._pending.items()):
            self._settle(request_id, Reply.failure(code, error, time.monotonic() - started))
