"""One WebSocket server core for the main backend and every model backend.

It owns what both kinds of server must get right the same way:
- the handshake: a cap on open connections (HTTP 503 beyond it), shared-secret auth (HTTP 401),
  and plain-HTTP endpoints on the same port (probes, metrics, the dashboard);
- the frame loop: every frame is parsed (`messages.parse_envelope`), control messages
  (`health_check`) are answered at once, requests are admitted or refused at once; frames are taken
  from `data_received` by direct delivery (`direct.py`), the `recv()` loop only when they must wait;
- admission by count *and* bytes: requests in flight per connection, bytes charged by unanswered
  requests per connection and per process (`limits.request_charge`) → `overloaded`;
- exactly one reply per request, always encodable (`send_reply`), and a drain on shutdown.

What a request means is the `RequestHandler`'s business: the model backend runs it on its worker
pool, the main backend relays it.
"""

from __future__ import annotations

import asyncio
import http
import logging
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import websockets
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Response

from . import messages
from .auth import TokenAuth
from .batches import BATCH_SUBPROTOCOL, is_batch, split_batch, takes_batches
from .direct import DirectServerConnection
from .errors import ErrorCode, ProtocolError
from .http_endpoints import Endpoint, http_response
from .limits import (
    BYTES_PER_JSON_ELEMENT,
    DEFAULT_GRACE_PERIOD,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_IN_FLIGHT_PER_CONNECTION,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_PENDING_BYTES,
    DEFAULT_MAX_PENDING_BYTES_PER_CONNECTION,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
    DEFAULT_WS_MAX_QUEUE,
    request_charge,
)
from .outbox import Outbox, outbox_for
from .shutdown import drain_and_close

logger = logging.getLogger(__name__)

REQUEST_TYPES = frozenset({messages.INFERENCE_REQUEST, messages.ANALYZE})


@dataclass(slots=True)
class ServerLimits:
    """The limits of one server process; defaults and meaning in `limits.py`."""

    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    ws_max_queue: int = DEFAULT_WS_MAX_QUEUE
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_in_flight_per_connection: int = DEFAULT_MAX_IN_FLIGHT_PER_CONNECTION
    max_pending_bytes_per_connection: int = DEFAULT_MAX_PENDING_BYTES_PER_CONNECTION
    max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES
    ping_interval: float | None = DEFAULT_PING_INTERVAL
    ping_timeout: float | None = DEFAULT_PING_TIMEOUT
    grace_period: float = DEFAULT_GRACE_PERIOD

    def __post_init__(self) -> None:
        for name in (
            "max_message_size",
            "ws_max_queue",
            "max_connections",
            "max_in_flight_per_connection",
            "max_pending_bytes_per_connection",
            "max_pending_bytes",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")


@dataclass(slots=True, eq=False)
class Peer:
    """One client connection: who it is and what it has in flight."""

    websocket: ServerConnection
    owner: str  # the namespace of its sessions: its token's identity, else this connection
    authenticated: bool
    binary: bool = False  # negotiated a binary subprotocol: binary frames are MessagePack
    batch: bool = False  # negotiated batches.BATCH_SUBPROTOCOL: a binary frame may hold several messages
    in_flight: int = 0
    pending_bytes: int = 0
    tasks: set[asyncio.Task] = field(default_factory=set)


class RequestHandler(Protocol):
    allowed_types: frozenset[str]

    def control_reply(self, peer: Peer, msg: messages.Message) -> dict[str, Any]:
        """The reply to a message that is not a request (health_check)."""

    def admit(self, peer: Peer, msg: messages.Message) -> tuple[ErrorCode, str] | None:
        """Why this request cannot be admitted now (loading, queue full), or None: then the request
        is admitted (count it now) and `handle` will be called for it."""

    async def handle(self, peer: Peer, msg: messages.Message) -> dict[str, Any] | bytes:
        """The one reply to an admitted request: a message dict, or a frame already encoded."""

    # Optional: `answer_now(peer, msg) -> dict | bytes | None`, the reply to an admitted request
    # computed at once on the event loop, or None to have `handle` run it. A handler that answers
    # now has nothing to wait for, so the request needs no task (BaseModelBackend, run_inline).
    #
    # Optional: `answer_later(peer, msg, respond) -> bool`, an admitted request whose answer comes
    # later through a callback, `respond(reply)` called exactly once (maybe before it returns), or
    # False to have `handle` run it. No task either (MainBackend's relay: the reply is sent from
    # the backend connection's data_received).


class ProtocolServer:
    def __init__(
        self,
        handler: RequestHandler,
        host: str,
        port: int,
        *,
        limits: ServerLimits | None = None,
        auth: TokenAuth | None = None,
        endpoints: dict[str, Endpoint] | None = None,
        protected_endpoints: dict[str, Endpoint] | None = None,
        name: str = "server",
        reuse_port: bool = False,
    ) -> None:
        self.handler = handler
        self._answer_now = getattr(handler, "answer_now", None)
        self._answer_later = getattr(handler, "answer_later", None)
        # SO_REUSEPORT: several worker processes listen on one port; the kernel spreads connections.
        self.reuse_port = reuse_port
        self.host = host
        self.port = port
        self.limits = limits or ServerLimits()
        self.auth = auth or TokenAuth()
        self.endpoints = dict(endpoints or {})
        self.protected_endpoints = dict(protected_endpoints or {})  # need a token when auth is on
        self.name = name
        self.bound_port: int | None = None
        self.connections = 0
        self.in_flight = 0
        self.pending_bytes = 0
        self.draining = False
        self.idle = asyncio.Event()
        self.idle.set()
        self._server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # set by start()
        self._peers: set[Peer] = set()
        # Bytes a request is charged: the handler knows what it will materialise (default: decoded JSON).
        self._charge: Callable[[str | bytes], int] = getattr(handler, "charge", request_charge)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._server = await serve(
            self._serve_connection,
            self.host,
            self.port,
            create_connection=DirectServerConnection,  # frames answered from data_received
            process_request=self._process_request,
            select_subprotocol=_select_subprotocol,
            max_size=self.limits.max_message_size,
            max_queue=self.limits.ws_max_queue,
            ping_interval=self.limits.ping_interval,
            ping_timeout=self.limits.ping_timeout,
            compression=None,  # frames are mostly base64 images: deflate costs CPU and saves little
            reuse_port=self.reuse_port or None,
        )
        self.bound_port = self._server.sockets[0].getsockname()[1]

    async def drain_and_close(self) -> bool:
        """Refuse new work, let admitted requests finish within the grace period, close."""
        self.draining = True
        if self._server is None:
            return True
        return await drain_and_close(self._server, self.idle, self.limits.grace_period, self._abandon_requests)

    def _abandon_requests(self) -> None:
        """Grace period over: requests still in flight are given up (their connections close with
        1001 next, so no reply could reach them); the model call itself runs on, unwatched."""
        for peer in list(self._peers):
            for task in list(peer.tasks):
                task.cancel()

    # ---- handshake ---------------------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request) -> Response | None:
        path = request.path.split("?", 1)[0]
        wants_websocket = request.headers.get("Upgrade", "").lower() == "websocket"
        if not wants_websocket:
            endpoint = self.endpoints.get(path)
            if endpoint is not None:
                return http_response(*endpoint())
            endpoint = self.protected_endpoints.get(path)
            if endpoint is not None:
                if self.auth.enabled and self.auth.identity(request.path, request.headers) is None:
                    return _refuse(http.HTTPStatus.UNAUTHORIZED, "a valid token is required")
                return http_response(*endpoint())
            return None  # websockets answers 426 Upgrade Required
        if self.draining:
            return _refuse(http.HTTPStatus.SERVICE_UNAVAILABLE, "server is shutting down")
        if self.connections >= self.limits.max_connections:
            return _refuse(
                http.HTTPStatus.SERVICE_UNAVAILABLE, f"too many connections (limit {self.limits.max_connections})"
            )
        if self.auth.enabled and self.auth.identity(request.path, request.headers) is None:
            return _refuse(
                http.HTTPStatus.UNAUTHORIZED,
                "a valid token is required: 'Authorization: Bearer <token>' or ?token=<token>",
            )
        return None

    # ---- frames ------------------------------------------------------------------------------

    async def _serve_connection(self, websocket: ServerConnection) -> None:
        self.connections += 1
        identity = self.auth.identity(websocket.request.path, websocket.request.headers) if self.auth.enabled else None
        peer = Peer(
            websocket,
            owner=identity or f"conn-{uuid.uuid4().hex[:16]}",
            authenticated=identity is not None,
            binary=websocket.subprotocol in messages.BINARY_SUBPROTOCOLS,
            batch=websocket.subprotocol == BATCH_SUBPROTOCOL,
        )
        self._peers.add(peer)
        if isinstance(websocket, DirectServerConnection):
            websocket.on_message = lambda frame: self._take_frame(peer, frame)
        try:
            # Frames direct delivery leaves to the queue (see shared_protocol.direct), in order.
            async for frame in websocket:
                await self._on_frame(peer, frame)
        except websockets.ConnectionClosed:
            pass
        finally:
            # Replies to a gone peer cannot be delivered, but the work still ends (bounded by its
            # deadline) and the counters stay right.
            if peer.tasks:
                await asyncio.gather(*peer.tasks, return_exceptions=True)
            self._peers.discard(peer)
            self.connections -= 1

    async def _on_frame(self, peer: Peer, frame: str | bytes) -> None:
        """A frame from the queue: an immediate reply is awaited, so a peer that does not read
        stops this loop, and with it the reading of its frames (the library's flow control)."""
        for immediate in self._immediate_replies(peer, frame):
            await send_reply(peer.websocket, *immediate)

    def _take_frame(self, peer: Peer, frame: str | bytes) -> bool:
        """A frame by direct delivery (shared_protocol.direct), from data_received: handled without
        waiting, or False when the peer's write buffer is full (the frame goes to `_on_frame`)."""
        outbox = outbox_for(peer.websocket)
        if not outbox.can_send_now():
            return False
        if peer.batch and is_batch(frame):
            for reply, codec in self._immediate_replies(peer, frame):
                self._send_immediate(peer, outbox, reply, codec)
        else:  # one message: no generator (a client's frame, the gateway's common case)
            immediate = self._dispatch(peer, frame)
            if immediate is not None:
                self._send_immediate(peer, outbox, *immediate)
        return True

    def _send_immediate(self, peer: Peer, outbox: Outbox, reply: dict[str, Any], codec: str) -> None:
        encoded = encode_reply(reply, codec)
        if not outbox.send_nowait(encoded, text=codec != messages.MSGPACK):
            self._track(peer, send_reply(peer.websocket, encoded, codec))

    def _immediate_replies(self, peer: Peer, frame: str | bytes) -> Iterator[tuple[dict[str, Any], str]]:
        """Dispatch the frame's messages, one by one as the caller iterates (a batch frame's too,
        shared_protocol.batches), yielding each immediate reply with its codec; a batch that
        breaks the rules is one error reply and nothing of it is dispatched."""
        if peer.batch and is_batch(frame):
            try:
                batch = split_batch(frame)  # type: ignore[arg-type]
            except ProtocolError as exc:
                yield messages.error_message(None, exc.code, exc.message), messages.MSGPACK
                return
        else:
            batch = (frame,)
        for message in batch:
            immediate = self._dispatch(peer, message)
            if immediate is not None:
                yield immediate

    def _dispatch(self, peer: Peer, frame: str | bytes) -> tuple[dict[str, Any], str] | None:
        """Admit a frame and start its answer; returns the immediate reply (error, refusal or pong)
        with its codec, the form the frame came in, or None when the answer is under way."""
        admitted = self.admit_frame(peer, frame)
        if not isinstance(admitted, tuple):
            return admitted, messages.MSGPACK if isinstance(frame, bytes) and peer.binary else messages.JSON
        msg, charge = admitted
        if self._answer_now is not None:
            reply = self._answer_now_or_none(peer, msg)
            if reply is not None:
                self._reply_now(peer, reply, msg.codec, charge)
                return None
        if self._answer_later is None or not self._started(peer, msg, charge):
            self._track(peer, self._answer(peer, msg, charge))
        return None

    def _started(self, peer: Peer, msg: messages.Message, charge: int) -> bool:
        """Hand the request to the handler's `answer_later`; its one reply goes out through `respond`."""
        answered = False

        def respond(reply: dict[str, Any] | bytes) -> None:
            nonlocal answered
            if answered:  # a handler bug: the request had its reply
                logger.error("a second reply to %s %s was dropped", msg.type, msg.request_id)
                return
            answered = True
            self._reply_now(peer, reply, msg.codec, charge)

        try:
            return self._answer_later(peer, msg, respond)
        except Exception as exc:  # as in `answer`: a bug in a handler still produces one reply
            logger.exception("handling %s %s failed", msg.type, msg.request_id)
            if not answered:
                respond(messages.error_message(msg.request_id, ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}"))
            return True

    def _track(self, peer: Peer, work: Coroutine[Any, Any, None]) -> None:
        # The connection's handler waits for these before it ends (replies to a gone peer still
        # finish, and the counters stay right). The loop is kept: on Python 3.11 every
        # get_running_loop (create_task's too) is a getpid syscall.
        task = (self._loop or asyncio.get_running_loop()).create_task(work)
        peer.tasks.add(task)
        task.add_done_callback(peer.tasks.discard)

    # ---- the layer under the socket: frame in, reply out (what shared_protocol.testing drives) --

    def admit_frame(self, peer: Peer, frame: str | bytes) -> tuple[messages.Message, int] | dict[str, Any]:
        """Parse and admit one frame: (request, its charge) to be answered by `answer`, or the
        immediate reply (a parse error, a refusal, a pong)."""
        try:
            msg = messages.parse_envelope(frame, self.handler.allowed_types, binary=peer.binary)
        except ProtocolError as exc:
            return messages.error_message(exc.request_id, exc.code, exc.message)
        if msg.type not in REQUEST_TYPES:
            return self.handler.control_reply(peer, msg)
        charge = self._charge(frame)
        refusal = self._admission_refusal(peer, charge) or self.handler.admit(peer, msg)
        if refusal is not None:
            code, text = refusal
            return messages.error_message(msg.request_id, code, text)
        peer.in_flight += 1
        peer.pending_bytes += charge
        if not self.in_flight:  # busy from now on (Event.clear is Python code: once, not per request)
            self.idle.clear()
        self.in_flight += 1
        self.pending_bytes += charge
        return msg, charge

    async def answer(self, peer: Peer, msg: messages.Message) -> dict[str, Any] | bytes:
        """The one reply to an admitted request."""
        try:
            return await self.handler.handle(peer, msg)
        except Exception as exc:  # a bug in a handler must still produce exactly one reply
            logger.exception("handling %s %s failed", msg.type, msg.request_id)
            return messages.error_message(msg.request_id, ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}")

    async def reply_to(self, peer: Peer, frame: str | bytes) -> dict[str, Any] | bytes:
        """The one reply to one frame, awaited: the whole protocol without a socket."""
        admitted = self.admit_frame(peer, frame)
        if not isinstance(admitted, tuple):
            return admitted
        msg, charge = admitted
        try:
            reply = self._answer_now_or_none(peer, msg) if self._answer_now is not None else None
            return reply if reply is not None else await self.answer(peer, msg)
        finally:
            self._release(peer, charge)

    def _admission_refusal(self, peer: Peer, charge: int) -> tuple[ErrorCode, str] | None:
        limits = self.limits
        if self.draining:
            return ErrorCode.UNAVAILABLE, f"{self.name} is shutting down"
        ceiling = min(limits.max_pending_bytes_per_connection, limits.max_pending_bytes)
        if charge > ceiling:
            # Never admissible, however idle the server: retrying will not help.
            return (
                ErrorCode.BAD_REQUEST,
                f"request would weigh {charge} bytes once decoded (its text plus {BYTES_PER_JSON_ELEMENT} bytes "
                f"per array element or member); at most {ceiling}: send fewer values, or the compact form "
                "(e.g. EEG data_b64, the binary subprotocol)",
            )
        if peer.in_flight >= limits.max_in_flight_per_connection:
            return (
                ErrorCode.OVERLOADED,
                f"more than {limits.max_in_flight_per_connection} requests in flight on this connection",
            )
        if peer.pending_bytes + charge > limits.max_pending_bytes_per_connection:
            return (
                ErrorCode.OVERLOADED,
                f"this connection's unanswered requests would weigh more than "
                f"{limits.max_pending_bytes_per_connection} bytes; wait for replies",
            )
        if self.pending_bytes + charge > limits.max_pending_bytes:
            return ErrorCode.OVERLOADED, f"{self.name} holds {limits.max_pending_bytes} bytes of unanswered requests"
        return None

    def _answer_now_or_none(self, peer: Peer, msg: messages.Message) -> dict[str, Any] | bytes | None:
        try:
            return self._answer_now(peer, msg)
        except Exception as exc:  # as in `answer`: a bug in a handler still produces one reply
            logger.exception("handling %s %s failed", msg.type, msg.request_id)
            return messages.error_message(msg.request_id, ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}")

    def _reply_now(self, peer: Peer, reply: dict[str, Any] | bytes, codec: str, charge: int) -> None:
        """Queue a reply computed at once; only a peer whose buffer is full makes it wait (a task)."""
        frame = encode_reply(reply, codec)
        if outbox_for(peer.websocket).send_nowait(frame, text=codec != messages.MSGPACK):
            self._release(peer, charge)
            return
        self._track(peer, self._send_then_release(peer, frame, codec, charge))

    async def _send_then_release(self, peer: Peer, frame: bytes, codec: str, charge: int) -> None:
        try:
            await send_reply(peer.websocket, frame, codec)
        finally:
            self._release(peer, charge)

    async def _answer(self, peer: Peer, msg: messages.Message, charge: int) -> None:
        try:
            await send_reply(peer.websocket, await self.answer(peer, msg), msg.codec)
        finally:
            self._release(peer, charge)  # after the send: a drain waits for replies to go out

    def _release(self, peer: Peer, charge: int) -> None:
        peer.in_flight -= 1
        peer.pending_bytes -= charge
        self.in_flight -= 1
        self.pending_bytes -= charge
        if self.in_flight == 0:
            self.idle.set()


def encode_reply(reply: dict[str, Any] | bytes, codec: str = messages.JSON) -> bytes:
    """The bytes of one reply. A reply that cannot be encoded (NaN in JSON, numpy types, lone
    surrogates) is replaced by an `internal` error for the same request."""
    if isinstance(reply, bytes):
        return reply
    encode = messages.encode_msgpack if codec == messages.MSGPACK else messages.encode_bytes
    try:
        return encode(reply)
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        request_id = reply.get("request_id")
        logger.error("reply %r cannot be encoded: %s", request_id, exc)
        if not _encodable(request_id):
            request_id = None
        return encode(
            messages.error_message(request_id, ErrorCode.INTERNAL, f"result cannot be encoded as JSON: {exc}")
        )


async def send_reply(websocket, reply: dict[str, Any] | bytes, codec: str = messages.JSON) -> None:
    """Send one reply (a text frame, or a binary one in the binary form); a peer that is gone is
    not an error."""
    try:
        await outbox_for(websocket).send(encode_reply(reply, codec), text=codec != messages.MSGPACK)
    except websockets.ConnectionClosed:
        logger.debug("peer gone before a reply could be sent")


def _select_subprotocol(connection: ServerConnection, offered) -> str | None:
    """Batch frames, else the binary form, when the client offers it; otherwise no subprotocol
    (JSON, the seed's). Batch frames only when this server takes frames of a batch's size."""
    if BATCH_SUBPROTOCOL in offered and takes_batches(connection.protocol.max_message_size):
        return BATCH_SUBPROTOCOL
    return messages.BINARY_SUBPROTOCOL if messages.BINARY_SUBPROTOCOL in offered else None


def _encodable(value: Any) -> bool:
    try:
        return isinstance(value, str) and bool(value.encode("utf-8"))
    except UnicodeError:
        return False


def _refuse(status: http.HTTPStatus, text: str) -> Response:
    body = (text + "\n").encode()
    headers = Headers([("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return Response(status.value, status.phrase, headers, body)
