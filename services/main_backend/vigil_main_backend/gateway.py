"""The client-facing WebSocket server on :8765.

Clients speak the seed protocol plus:
- `inference_request` with `model` naming one backend: relayed (the `data` text verbatim, never
  decoded here), answered with the client's id;
- `analyze`: one payload fanned out to every enabled backend that uses one of its inputs,
  answered once with per-backend `results`, per-backend `errors` (partial results are normal) and
  the `fused` person-level state;
- `health_check` -> `pong` with overall status and each backend's status word (details — URLs,
  errors, replicas — only for a client that presented a token).
Sessions are the client's own: every request carries `session_owner` (this connection, or the
client's token identity) to the backend, which keys session state by it.
Plain HTTP on the same port: / (dashboard), /healthz, /readyz, /metrics and /status (token).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import msgspec

from shared_protocol import ErrorCode, Reply, logs, messages
from shared_protocol.auth import TokenAuth, parse_tokens
from shared_protocol.client import resolver
from shared_protocol.eventloop import stop_on_signals
from shared_protocol.fields import DEFAULT_SESSION_ID
from shared_protocol.http_endpoints import json_endpoint
from shared_protocol.reload import RELOAD_ACCEPTED, RELOAD_FRAME, RELOAD_MODEL, AdminFrameServer, send_reload
from shared_protocol.server import Peer, ProtocolServer, ServerLimits

from .config import Config
from .dashboard import dashboard_endpoints
from .fusion import fuse
from .metrics import MainBackendMetrics
from .replicas import ReplicaCollector, ReplicaPool

logger = logging.getLogger(__name__)

_ALLOWED_TYPES = frozenset({messages.INFERENCE_REQUEST, messages.ANALYZE, messages.HEALTH_CHECK, RELOAD_MODEL})
# The gateway never decodes `data`; a request costs its frame plus one copy per backend it goes to.
_GATEWAY_COPIES = 3

# Backend states as the public sees them (no addresses, no error texts).
HEALTHY = "healthy"
DEGRADED = "degraded"
UNHEALTHY = "unhealthy"


class MainBackend:
    allowed_types = _ALLOWED_TYPES

    def __init__(self, config: Config, *, api_tokens: tuple[str, ...] | None = None, worker: int | None = None) -> None:
        self.config = config
        # Which of `workers` processes this is (workers.py); None when the gateway is one process.
        self.worker = worker
        self.metrics = MainBackendMetrics(worker)
        self.clients: dict[str, ReplicaPool] = {}
        self.metrics.registry.register(ReplicaCollector(self.clients))  # per-replica in flight, errors
        if api_tokens is None:
            api_tokens = parse_tokens(os.environ.get("VIGIL_API_TOKENS"))
        self.auth = TokenAuth(api_tokens)
        # What the gateway presents to the model backends (they accept it when they have tokens set).
        self.backend_token = os.environ.get("VIGIL_BACKEND_TOKEN") or (api_tokens[0] if api_tokens else None)
        self.bound_port: int | None = None
        self._trace_prefix = uuid.uuid4().hex[:8]
        self._trace_counter = itertools.count()
        self._server: ProtocolServer | None = None
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- lifecycle ---------------------------------------------------------------------------

    def _make_clients(self) -> None:
        main = self.config.main_backend
        for name, cfg in self.config.model_backends.items():
            if not cfg.enabled:
                continue
            self.clients[name] = ReplicaPool(
                name,
                cfg.url,
                endpoints=cfg.endpoints,
                resolve_interval=cfg.resolve_interval,
                request_timeout=cfg.request_timeout,
                reconnect_interval=cfg.reconnect_interval,
                max_reconnect_attempts=cfg.max_reconnect_attempts,
                health_interval=main.health_interval,
                max_in_flight=cfg.max_in_flight,
                batch_frames=cfg.batch_frames,
                max_message_size=main.max_message_size,
                token=self.backend_token,
            )

    def _limits(self) -> ServerLimits:
        main = self.config.main_backend
        return ServerLimits(
            max_message_size=main.max_message_size,
            max_connections=main.max_connections,
            max_in_flight_per_connection=main.max_in_flight_per_connection,
            max_pending_bytes=main.max_pending_bytes,
            max_pending_bytes_per_connection=main.max_pending_bytes_per_connection,
            grace_period=main.grace_period,
        )

    async def serve(self, *, install_signal_handlers: bool = False) -> None:
        main = self.config.main_backend
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if install_signal_handlers:
            stop_on_signals(self._stop)
        self._make_clients()
        for client in self.clients.values():
            client.start()
        self._server = AdminFrameServer(  # ProtocolServer + the reload_model admin route
            self,
            main.host,
            main.port,
            limits=self._limits(),
            auth=self.auth,
            endpoints={
                **dashboard_endpoints(),  # GET / and /static/*: the browser dashboard
                "/healthz": json_endpoint(lambda: (200, {"status": "alive"})),
                "/readyz": json_endpoint(self._readyz),
            },
            protected_endpoints={
                "/metrics": self._metrics_endpoint,
                "/status": json_endpoint(lambda: (200, self.backend_report())),
            },
            name="main backend",
            reuse_port=main.workers > 1,  # the workers share the port; the kernel spreads connections
        )
        await self._server.start()
        self.bound_port = self._server.bound_port
        logger.info(
            "main backend listening on ws://%s:%s (auth %s); backends: %s",
            main.host,
            self.bound_port,
            "on" if self.auth.enabled else "off",
            {name: client.url for name, client in self.clients.items()} or "none enabled",
        )
        refresher = None
        if self.metrics.multiprocess_dir is not None:  # other workers' scrapes read this one's gauges
            refresher = asyncio.create_task(self.metrics.refresh_forever(self.clients))
        try:
            await self._stop.wait()
        finally:
            if refresher is not None:
                refresher.cancel()
            await self._shutdown()
            self.metrics.flush()  # multiprocess mode: the last tallies reach this worker's files

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)

    async def _shutdown(self) -> None:
        if self._server is not None:
            await self._server.drain_and_close()
        await asyncio.gather(*(client.close() for client in self.clients.values()))
        logger.info("main backend stopped")

    @property
    def _draining(self) -> bool:
        return self._server is not None and self._server.draining

    # ---- status ------------------------------------------------------------------------------

    def backend_report(self) -> dict[str, Any]:
        """Everything about every backend (for operators: needs a token when auth is on)."""
        report: dict[str, Any] = {}
        for name, cfg in self.config.model_backends.items():
            client = self.clients.get(name)
            if client is None:
                report[name] = {"enabled": False, "state": "disabled", "ready": False, "required": cfg.required}
                continue
            s = client.status
            report[name] = {
                "enabled": True,
                "required": cfg.required,
                "status": self._status_word(client),
                "url": client.url,
                "state": s.state,
                "connected": client.connected,
                "ready": client.ready,
                "backend_status": s.backend_status,
                "model": s.model,
                "in_flight": client.in_flight,
                "last_latency_ms": s.last_latency_ms,
                "last_error": s.last_error,
                "reconnects": s.reconnects,
                "replicas": client.replica_report(),
            }
        return report

    def public_backend_report(self) -> dict[str, Any]:
        """Per backend name: healthy / degraded / unhealthy / disabled, and replica counts."""
        report: dict[str, Any] = {}
        for name in self.config.model_backends:
            client = self.clients.get(name)
            if client is None:
                report[name] = {"status": "disabled"}
                continue
            replicas = client.replica_report()
            report[name] = {
                "status": self._status_word(client),
                "replicas": {"healthy": replicas["healthy"], "total": replicas["total"]},
            }
        return report

    @staticmethod
    def _status_word(client: ReplicaPool) -> str:
        replicas = client.replica_report()
        if replicas["total"] and replicas["healthy"] == replicas["total"]:
            return HEALTHY
        if replicas["healthy"] or client.connected:
            return DEGRADED  # some replicas answer, or connected but the model is not healthy yet
        return UNHEALTHY

    def overall_status(self) -> str:
        if self._draining:
            return "draining"
        return HEALTHY if all(client.ready for client in self.clients.values()) else DEGRADED

    def _readyz(self) -> tuple[int, dict[str, Any]]:
        missing = [
            name
            for name, cfg in self.config.model_backends.items()
            if cfg.required and not (name in self.clients and self.clients[name].connected)
        ]
        ready = not missing and not self._draining
        body = {
            "status": "ready" if ready else "not_ready",
            "overall": self.overall_status(),
            "backends": self.public_backend_report(),
        }
        if missing:
            body["missing_required_backends"] = missing
        if self.worker is not None:  # answered by the worker that took the connection
            body["worker"] = self.worker
        return (200 if ready else 503), body

    def _metrics_endpoint(self) -> tuple[int, str, bytes]:
        self.metrics.refresh(self.clients)
        content_type, body = self.metrics.render()
        return 200, content_type, body

    # ---- the server core's handler -----------------------------------------------------------

    def charge(self, frame: str | bytes) -> int:
        return _GATEWAY_COPIES * len(frame)

    def control_reply(self, peer: Peer, msg: messages.Message) -> dict[str, Any]:
        self.metrics.count_client_message(msg.type)
        if msg.type == RELOAD_MODEL:  # AdminFrameServer turns it into a request for `handle`
            return {"type": RELOAD_FRAME, "request_id": msg.request_id}
        details = peer.authenticated  # with auth off nobody is: details go to /status on a token
        backends = self.backend_report() if details else self.public_backend_report()
        if self.worker is not None:  # which worker process holds this connection (workers > 1)
            return messages.pong(self.overall_status(), msg.request_id, backends=backends, worker=self.worker)
        return messages.pong(self.overall_status(), msg.request_id, backends=backends)

    def admit(self, peer: Peer, msg: messages.Message) -> tuple[ErrorCode, str] | None:
        self.metrics.count_client_message(msg.type)
        return None

    def answer_later(
        self, peer: Peer, msg: messages.Message, respond: Callable[[dict[str, Any] | bytes], None]
    ) -> bool:
        """The relay of an `inference_request` without a task (ProtocolServer's `answer_later`): sent to
        the backend now, answered from the backend connection's data_received. Other requests
        (analyze, reload_model) return False and go to `handle`."""
        if msg.type != messages.INFERENCE_REQUEST:
            return False
        self._relay(peer, msg, _Relay(self, msg, msg.trace_id or self._new_trace_id(), respond))
        return True

    async def handle(self, peer: Peer, msg: messages.Message) -> dict[str, Any] | bytes:
        if msg.type == messages.INFERENCE_REQUEST:  # without a socket (reply_to, the testing driver)
            future: asyncio.Future = asyncio.get_running_loop().create_future()
            self.answer_later(peer, msg, resolver(future))
            return await future
        # The trace id follows the request to every backend and back; the client may choose it.
        trace_id = msg.trace_id or self._new_trace_id()
        started = time.monotonic()
        if msg.type == RELOAD_MODEL:
            reply = await self._reload_backend(peer, msg)
        else:
            reply = await self._analyze(peer, msg, trace_id)
        return self._finish(msg, trace_id, started, reply)

    def _finish(
        self, msg: messages.Message, trace_id: str, started: float, reply: dict[str, Any] | bytes
    ) -> dict[str, Any] | bytes:
        """The reply as it goes out: with its trace id, and logged."""
        if isinstance(reply, dict):
            reply["trace_id"] = trace_id
            code = reply.get("code")
        else:
            code = None  # a relayed result, already encoded
        if code is not None or logger.isEnabledFor(logging.DEBUG):
            logger.log(
                logging.INFO if code not in (None, ErrorCode.BAD_REQUEST.value) else logging.DEBUG,
                "%s %s",
                msg.type,
                "answered" if code is None else f"failed: {reply.get('error')}",
                extra=logs.request_fields(
                    client_request_id=msg.request_id,
                    trace_id=trace_id,
                    code=code or "ok",
                    model=msg.model if isinstance(msg.model, str) else None,
                    duration_ms=round((time.monotonic() - started) * 1000, 3),
                ),
            )
        return reply

    def _new_trace_id(self) -> str:
        # A random per-process prefix and a counter: unique, and no syscall per request (uuid4 is one).
        return f"{self._trace_prefix}{next(self._trace_counter):x}"

    # ---- the admin route -----------------------------------------------------------------------

    async def _reload_backend(self, peer: Peer, msg: messages.Message) -> dict[str, Any]:
        """Admin route: `reload_model` with `model` goes to every replica of that backend; the reply
        is `reload_accepted` when all accepted, else an error, with each replica's answer."""
        if not (self.auth.enabled and peer.authenticated):
            return messages.error_message(
                msg.request_id,
                ErrorCode.BAD_REQUEST,
                "reload_model on the main backend needs auth on (VIGIL_API_TOKENS) and a token",
            )
        name = msg.data.get("model")
        refusal = (
            self._backend_refusal(name)
            if isinstance(name, str)
            else Reply.failure(ErrorCode.BAD_REQUEST, "field 'model' must name the backend to reload")
        )
        if refusal is not None:
            return messages.error_message(msg.request_id, refusal.code, refusal.error)
        replicas = self.clients[name].replicas
        if not replicas:
            return messages.error_message(msg.request_id, ErrorCode.UNAVAILABLE, f"backend {name!r} has no replica")
        args = {"path": msg.data.get("path"), "version": msg.data.get("version"), "token": self.backend_token}
        answers = await asyncio.gather(*(send_reload(r.client.url, **args) for r in replicas), return_exceptions=True)
        per_replica: dict[str, Any] = {}
        for replica, answer in zip(replicas, answers, strict=True):
            if isinstance(answer, BaseException):
                answer = {"type": "error", "code": "unavailable", "error": f"{type(answer).__name__}: {answer}"}
            answer.pop("request_id", None)
            per_replica[replica.id] = answer
        logger.info("reload_model %s forwarded to %d replica(s): %s", name, len(replicas), per_replica)
        if all(a.get("type") == RELOAD_ACCEPTED for a in per_replica.values()):
            reply = {"type": RELOAD_ACCEPTED, "model": name, "replicas": per_replica}
            if msg.request_id is not None:
                reply["request_id"] = msg.request_id
            return reply
        first = next(a for a in per_replica.values() if a.get("type") != RELOAD_ACCEPTED)
        error = messages.error_message(msg.request_id, first.get("code", "unavailable"), first.get("error", ""))
        error["replicas"] = per_replica
        return error

    # ---- routing -----------------------------------------------------------------------------

    def _backend_refusal(self, name: str) -> Reply | None:
        if name not in self.config.model_backends:
            known = sorted(self.config.model_backends)
            return Reply.failure(ErrorCode.BAD_REQUEST, f"unknown model {name[:64]!r}; configured: {known}")
        if name not in self.clients:
            return Reply.failure(ErrorCode.UNAVAILABLE, f"backend {name!r} is disabled in the configuration")
        return None

    def _submit(
        self,
        name: str,
        peer: Peer,
        data_raw: bytes | msgspec.Raw,
        session_id: str | None,
        trace_id: str,
        client_id: str,
        codec: str,
        on_reply: Callable[[Reply], None],
    ) -> None:
        """Send one request to backend `name`; `on_reply` gets its one Reply (maybe at once)."""
        refusal = self._backend_refusal(name)
        if refusal is not None:
            on_reply(refusal)
            return
        client = self.clients[name]

        def answered(reply: Reply) -> None:
            try:  # the reply first (it may be a client's, written at once), then the bookkeeping
                on_reply(reply)
            finally:
                self.metrics.observe_reply(name, reply)
                if logger.isEnabledFor(logging.DEBUG):
                    # The mapping from the client's id to the id on the backend connection: a
                    # backend's log line (request_id, trace_id) leads back to the client's request.
                    logger.debug(
                        "backend %s answered %s",
                        name,
                        reply.code or "ok",
                        extra=logs.request_fields(
                            client_request_id=client_id,
                            request_id=reply.backend_request_id,
                            trace_id=trace_id,
                            session=logs.session_digest(peer.owner, session_id),
                            code=reply.code or "ok",
                        ),
                    )

        # Replicas route a session by a key no other client can produce.
        session_key = None if session_id is None else f"{peer.owner}/{session_id}"
        client.submit(
            None,
            on_reply=answered,
            data_raw=data_raw,
            owner=peer.owner,
            session_key=session_key,
            trace_id=trace_id,
            codec=codec,
        )

    async def _call(
        self,
        name: str,
        peer: Peer,
        data_raw: bytes | msgspec.Raw,
        session_id: str | None,
        trace_id: str,
        client_id: str,
        codec: str = messages.JSON,
    ) -> Reply:
        """`_submit`, awaited (analyze's fan-out)."""
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._submit(name, peer, data_raw, session_id, trace_id, client_id, codec, resolver(future))
        return await future

    def _relay(self, peer: Peer, msg: messages.Message, relay: _Relay) -> None:
        """Relay an inference_request to its backend; `relay` gets the backend's Reply (maybe at once)."""
        model = msg.model
        if model is None:
            relay.fail(f"missing field 'model' (one of {sorted(self.config.model_backends)}); or send 'analyze'")
            return
        if not isinstance(model, str):
            relay.fail(f"field 'model' must be a string, got {type(model).__name__}")
            return
        session_id = _session_id(msg)
        if not isinstance(session_id, str):
            relay(session_id)
            return
        self._submit(model, peer, msg.data_raw, session_id, relay.trace_id, msg.request_id, msg.codec, relay)

    @staticmethod
    def _relay_reply(msg: messages.Message, model: str, trace_id: str, reply: Reply) -> dict[str, Any] | bytes:
        if not reply.ok:
            error = messages.error_message(msg.request_id, reply.code, reply.error)
            error["model"] = model
            return error
        raw = reply.untouched_raw
        # The backend's result as it came (it encoded it strictly): spliced, not re-encoded.
        spliced = raw is not None and reply.codec == msg.codec
        envelope = messages.inference_response(msg.request_id, raw if spliced else reply.data, model=model)
        if reply.timing is not None:
            envelope["timing"] = reply.timing
        if reply.model_version is not None:
            envelope["model_version"] = reply.model_version
        if not spliced:
            return envelope  # `_finish` adds the trace id to a message dict
        envelope["trace_id"] = trace_id
        return messages.encode_members(envelope, msg.codec)

    async def _analyze(self, peer: Peer, msg: messages.Message, trace_id: str) -> dict[str, Any]:
        members = _members(msg)
        if not isinstance(members, dict):
            return messages.error_message(msg.request_id, members.code, members.error)
        present = {key for key, raw in members.items() if not messages.is_null(raw, msg.codec)}
        targets = {
            name: [key for key in self.config.inputs_of(name) if key in present]
            for name, cfg in self.config.model_backends.items()
            if cfg.enabled
        }
        targets = {name: keys for name, keys in targets.items() if keys}
        if not targets:
            usable = sorted({key for name in self.clients for key in self.config.inputs_of(name)})
            return messages.error_message(
                msg.request_id,
                ErrorCode.BAD_REQUEST,
                f"'analyze' data has none of the inputs the enabled backends use ({usable})",
            )
        # Each backend gets the shared fields plus only its own inputs (no 200 KB image to eeg),
        # spliced from the client's text without decoding it.
        all_inputs = {key for name in targets for key in self.config.inputs_of(name)}
        shared = {key: raw for key, raw in members.items() if key not in all_inputs}
        session_id = _session_id(msg)
        if not isinstance(session_id, str):
            return messages.error_message(msg.request_id, session_id.code, session_id.error)
        names = list(targets)
        started = time.monotonic()
        replies = await asyncio.gather(
            *(
                self._call(
                    name,
                    peer,
                    messages.encode_members({**shared, **{key: members[key] for key in targets[name]}}, msg.codec),
                    session_id,
                    trace_id,
                    msg.request_id,
                    msg.codec,
                )
                for name in names
            )
        )
        results: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        for name, reply in zip(names, replies, strict=True):
            if reply.ok:
                results[name] = reply.data
            else:
                errors[name] = {"code": reply.code, "error": reply.error}
        body = {
            "results": results,
            "errors": errors,
            "fused": fuse(results, errors),
            "elapsed_ms": round((time.monotonic() - started) * 1000, 3),
        }
        return {"type": messages.ANALYZE_RESPONSE, "request_id": msg.request_id, "data": body}


def _members(msg: messages.Message) -> dict[str, msgspec.Raw] | Reply:
    """The top-level members of `data`, each undecoded (the envelope parser checked it is an object)."""
    try:
        return messages.decode_members(msg.data_raw, msg.codec)
    except (msgspec.DecodeError, RecursionError) as exc:
        return Reply.failure(ErrorCode.BAD_REQUEST, f"'data' is not a valid object: {exc}")


class _Routing(msgspec.Struct):
    """The one member of `data` the gateway reads: the rest is skipped, not materialised."""

    session_id: Any = None


_ROUTING_DECODERS = {messages.JSON: msgspec.json.Decoder(_Routing), messages.MSGPACK: msgspec.msgpack.Decoder(_Routing)}


def _session_id(msg: messages.Message) -> str | Reply:
    """The client's session id as routing key (validated by the backend, which owns the rule), or
    why `data` cannot be read. Absent, null or not a string is the default session, which backends
    keep state for like any other (and refuse a bad id themselves)."""
    try:
        value = _ROUTING_DECODERS[msg.codec].decode(msg.data_raw).session_id
    except (msgspec.DecodeError, RecursionError) as exc:
        return Reply.failure(ErrorCode.BAD_REQUEST, f"'data' is not a valid object: {exc}")
    return value if isinstance(value, str) and value else DEFAULT_SESSION_ID


class _Relay:
    """One relayed inference_request: turns the backend's Reply into the client's reply and hands it
    to the server core's `respond`. One object per request instead of a closure per layer (each
    cost ~0.5 us a request, bench/relay_inprocess.py)."""

    __slots__ = ("gateway", "msg", "trace_id", "started", "respond")

    def __init__(
        self, gateway: MainBackend, msg: messages.Message, trace_id: str, respond: Callable[[dict | bytes], None]
    ) -> None:
        self.gateway = gateway
        self.msg = msg
        self.trace_id = trace_id
        self.started = time.monotonic()
        self.respond = respond

    def __call__(self, reply: Reply) -> None:
        msg, gateway = self.msg, self.gateway
        try:
            out = gateway._relay_reply(msg, msg.model, self.trace_id, reply)
        except Exception as exc:  # a bug here must still produce the one reply
            logger.exception("relaying the reply to %s failed", msg.request_id)
            out = messages.error_message(msg.request_id, ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}")
        self.finish(out)

    def fail(self, error: str) -> None:
        """The request is refused before it reaches a backend (bad_request)."""
        self.finish(messages.error_message(self.msg.request_id, ErrorCode.BAD_REQUEST, error))

    def finish(self, reply: dict[str, Any] | bytes) -> None:
        try:
            reply = self.gateway._finish(self.msg, self.trace_id, self.started, reply)
        except Exception:  # the reply still goes out, without what failed to be added
            logger.exception("finishing the reply to %s failed", self.msg.request_id)
        self.respond(reply)
