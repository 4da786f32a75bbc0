"""The client-facing WebSocket server on :8765.

Clients speak the seed protocol plus:
- `inference_request` with `model` naming one backend: relayed, answered with the client's id;
- `analyze`: one payload fanned out to every enabled backend that uses one of its inputs,
  answered once with per-backend `results` and per-backend `errors` (partial results are normal);
- `health_check` -> `pong` with overall status and each backend's state.
Plain HTTP on the same port: /healthz, /readyz, /metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

from shared_protocol import BackendClient, ErrorCode, ProtocolError, Reply, messages
from shared_protocol.connection import read_frames, send_message
from shared_protocol.eventloop import stop_on_signals
from shared_protocol.http_endpoints import json_endpoint, make_process_request
from shared_protocol.shutdown import drain_and_close

from .config import Config
from .dashboard import dashboard_endpoints
from .fusion import fuse
from .metrics import GatewayMetrics

logger = logging.getLogger(__name__)

_ALLOWED_TYPES = frozenset({messages.INFERENCE_REQUEST, messages.ANALYZE, messages.HEALTH_CHECK})


class Gateway:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = GatewayMetrics()
        self.clients: dict[str, BackendClient] = {}
        self.bound_port: int | None = None
        self._draining = False
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- lifecycle ---------------------------------------------------------------------------

    def _make_clients(self) -> None:
        main = self.config.main_backend
        for name, cfg in self.config.model_backends.items():
            if not cfg.enabled:
                continue
            self.clients[name] = BackendClient(
                name,
                cfg.url,
                request_timeout=cfg.request_timeout,
                reconnect_interval=cfg.reconnect_interval,
                max_reconnect_attempts=cfg.max_reconnect_attempts,
                health_interval=main.health_interval,
                max_in_flight=cfg.max_in_flight,
                max_message_size=main.max_message_size,
            )

    async def serve(self, *, install_signal_handlers: bool = False) -> None:
        main = self.config.main_backend
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._idle.set()
        if install_signal_handlers:
            stop_on_signals(self._stop)
        self._make_clients()
        for client in self.clients.values():
            client.start()
        process_request = make_process_request(
            {
                **dashboard_endpoints(),  # GET / and /static/*: the browser dashboard
                "/healthz": json_endpoint(lambda: (200, {"status": "alive"})),
                "/readyz": json_endpoint(self._readyz),
                "/metrics": self._metrics_endpoint,
            }
        )
        server = await serve(
            self._handle_connection,
            main.host,
            main.port,
            process_request=process_request,
            max_size=main.max_message_size,
            compression=None,
        )
        self.bound_port = server.sockets[0].getsockname()[1]
        logger.info(
            "main backend listening on ws://%s:%s; backends: %s",
            main.host,
            self.bound_port,
            {name: client.url for name, client in self.clients.items()} or "none enabled",
        )
        try:
            await self._stop.wait()
        finally:
            await self._shutdown(server)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)

    async def _shutdown(self, server) -> None:
        self._draining = True
        await drain_and_close(server, self._idle, self.config.main_backend.grace_period)
        await asyncio.gather(*(client.close() for client in self.clients.values()))
        logger.info("main backend stopped")

    # ---- status ------------------------------------------------------------------------------

    def backend_report(self) -> dict[str, Any]:
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
            }
        return report

    def overall_status(self) -> str:
        if self._draining:
            return "draining"
        return "healthy" if all(client.ready for client in self.clients.values()) else "degraded"

    def _readyz(self) -> tuple[int, dict[str, Any]]:
        missing = [
            name
            for name, cfg in self.config.model_backends.items()
            if cfg.required and not (name in self.clients and self.clients[name].connected)
        ]
        ready = not missing and not self._draining
        body = {"status": "ready" if ready else "not_ready", "overall": self.overall_status()}
        if missing:
            body["missing_required_backends"] = missing
        return (200 if ready else 503), body

    def _metrics_endpoint(self) -> tuple[int, str, bytes]:
        for name, client in self.clients.items():
            self.metrics.backend_up.labels(name).set(1 if client.connected else 0)
            self.metrics.backend_ready.labels(name).set(1 if client.ready else 0)
            self.metrics.in_flight.labels(name).set(client.in_flight)
        content_type, body = self.metrics.render()
        return 200, content_type, body

    # ---- client connections ------------------------------------------------------------------

    async def _handle_connection(self, connection: ServerConnection) -> None:
        await read_frames(connection, self._handle_frame)

    async def _handle_frame(self, connection: ServerConnection, frame, tasks: set[asyncio.Task]) -> None:
        try:
            msg = messages.parse_message_keeping_data_text(frame, _ALLOWED_TYPES)
        except ProtocolError as exc:
            self.metrics.client_messages.labels("invalid").inc()
            await send_message(connection, messages.error_message(exc.request_id, exc.code, exc.message))
            return
        self.metrics.client_messages.labels(msg.type).inc()
        if msg.type == messages.HEALTH_CHECK:
            reply = messages.pong(self.overall_status(), msg.request_id, backends=self.backend_report())
            await send_message(connection, reply)
            return
        if self._draining:
            await send_message(
                connection,
                messages.error_message(msg.request_id, ErrorCode.UNAVAILABLE, "main backend is shutting down"),
            )
            return
        if len(tasks) >= self.config.main_backend.max_in_flight_per_connection:
            limit = self.config.main_backend.max_in_flight_per_connection
            await send_message(
                connection,
                messages.error_message(
                    msg.request_id, ErrorCode.OVERLOADED, f"more than {limit} requests in flight on this connection"
                ),
            )
            return
        handler = self._relay if msg.type == messages.INFERENCE_REQUEST else self._analyze
        self._in_flight += 1
        self._idle.clear()
        task = asyncio.create_task(self._run_handler(handler, connection, msg))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _run_handler(self, handler, connection: ServerConnection, msg: messages.Message) -> None:
        try:
            reply = await handler(msg)
        except Exception as exc:  # a bug here must still produce exactly one reply
            logger.exception("handling %s %s failed", msg.type, msg.request_id)
            reply = messages.error_message(msg.request_id, ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}")
        try:
            await send_message(connection, reply)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    # ---- routing -----------------------------------------------------------------------------

    def _backend_refusal(self, name: str) -> Reply | None:
        if name not in self.config.model_backends:
            known = sorted(self.config.model_backends)
            return Reply.failure(ErrorCode.BAD_REQUEST, f"unknown model {name!r}; configured: {known}")
        if name not in self.clients:
            return Reply.failure(ErrorCode.UNAVAILABLE, f"backend {name!r} is disabled in the configuration")
        return None

    async def _call(self, name: str, data: dict[str, Any], data_json: str | None = None) -> Reply:
        refusal = self._backend_refusal(name)
        if refusal is not None:
            return refusal
        client = self.clients[name]
        if not client.connected:
            client.wake()  # try to reconnect now rather than at the next tick
        reply = await client.request(data, data_json=data_json)
        self.metrics.observe_reply(name, reply)
        return reply

    async def _relay(self, msg: messages.Message) -> dict[str, Any]:
        model = msg.raw.get("model")
        if model is None:
            return messages.error_message(
                msg.request_id,
                ErrorCode.BAD_REQUEST,
                f"missing field 'model' (one of {sorted(self.config.model_backends)}); or send 'analyze'",
            )
        if not isinstance(model, str):
            return messages.error_message(
                msg.request_id, ErrorCode.BAD_REQUEST, f"field 'model' must be a string, got {type(model).__name__}"
            )
        reply = await self._call(model, msg.data, msg.data_json)
        if reply.ok:
            extra = {"model": model}
            if reply.timing is not None:
                extra["timing"] = reply.timing
            return messages.inference_response(msg.request_id, reply.data, **extra)
        error = messages.error_message(msg.request_id, reply.code, reply.error)
        error["model"] = model
        return error

    async def _analyze(self, msg: messages.Message) -> dict[str, Any]:
        data = msg.data
        present = {key for key in data if data[key] is not None}
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
        # Each backend gets the shared fields plus only its own inputs (no 200 KB image to eeg).
        all_inputs = {key for name in targets for key in self.config.inputs_of(name)}
        shared = {key: value for key, value in data.items() if key not in all_inputs}
        names = list(targets)
        started = time.monotonic()
        replies = await asyncio.gather(
            *(self._call(name, {**shared, **{key: data[key] for key in targets[name]}}) for name in names)
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
