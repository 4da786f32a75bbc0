"""BaseModelBackend: the server side of every model backend.

Mirrors the seed's API (and Triton's Python backend): a subclass implements
`initialize_model()`, `process_inference(data) -> dict` and `cleanup()`; `start()` serves until
SIGTERM/SIGINT or `stop()`.

What the base class guarantees:
- model work runs in a thread pool, never on the event loop, so health checks and WebSocket
  keepalive are answered while a model computes;
- every inference_request gets exactly one reply: a result, or an `error` with a code
  (`bad_request`, `timeout`, `overloaded`, `unavailable`, `internal`);
- work is bounded: at most `max_concurrency` model calls run and `max_queue` wait; beyond that the
  reply is `overloaded` at once;
- `GET /healthz` (process alive) and `GET /readyz` (model ready) answer plain HTTP on the same port;
- on shutdown it stops accepting work, finishes in-flight requests within `grace_period`, then
  calls `cleanup()`.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import logging
import threading
import time
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

from . import messages
from .batching import BatchCollector, PendingItem
from .connection import read_frames, send_message
from .errors import BadRequestError, ErrorCode, ProtocolError
from .eventloop import run_event_loop, stop_on_signals
from .http_endpoints import json_endpoint, make_process_request
from .limits import (
    DEFAULT_GRACE_PERIOD,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_QUEUE,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
    DEFAULT_REQUEST_TIMEOUT,
)
from .shutdown import drain_and_close

logger = logging.getLogger(__name__)

LOADING = "loading"
HEALTHY = "healthy"
UNHEALTHY = "unhealthy"

_ALLOWED_TYPES = frozenset({messages.INFERENCE_REQUEST, messages.HEALTH_CHECK})


class ModelInitializationError(RuntimeError):
    """Raised by `serve()` when `initialize_model` failed and `exit_on_init_failure` is set."""


class BaseModelBackend(abc.ABC):
    """Subclass this; implement `initialize_model`, `process_inference` and `cleanup`."""

    model_name: str = ""
    model_version: str = "0"

    def __init__(
        self,
        host: str = "localhost",
        port: int = 8766,
        *,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        max_queue: int = DEFAULT_MAX_QUEUE,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        grace_period: float = DEFAULT_GRACE_PERIOD,
        ping_interval: float | None = DEFAULT_PING_INTERVAL,
        ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
        exit_on_init_failure: bool = False,
        max_batch_size: int = 1,
        max_queue_delay_ms: float = 0.0,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        if max_queue < 0:
            raise ValueError("max_queue must be >= 0")
        if request_timeout <= 0:
            raise ValueError("request_timeout must be > 0")
        self.host = host
        self.port = port
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.request_timeout = request_timeout
        self.max_message_size = max_message_size
        self.grace_period = grace_period
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.exit_on_init_failure = exit_on_init_failure
        self.max_batch_size = max_batch_size
        self.max_queue_delay_ms = max_queue_delay_ms
        # Batching is on when a batch may hold more than one request; the collector is made in
        # serve() because it needs the running loop.
        self._batcher: BatchCollector | None = None
        BatchCollector(max_batch_size, max_queue_delay_ms)  # validates the two limits now
        self.device: str = "cpu"
        self.status: str = LOADING
        self.init_error: str | None = None
        self.bound_port: int | None = None  # the real port once listening (port=0 picks one)
        self._admitted = 0  # requests accepted and not yet answered
        self._started_at = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._draining = False
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._slots: asyncio.Semaphore | None = None
        self._idle: asyncio.Event | None = None
        self.ready_event = threading.Event()  # set once the server listens (for tests/embedding)

    # ---- the subclass API (the seed's) -------------------------------------------------------

    @abc.abstractmethod
    def initialize_model(self) -> None:
        """Load the model. Called once, on the worker pool, after the server is listening."""

    @abc.abstractmethod
    def process_inference(self, data: dict[str, Any]) -> dict[str, Any]:
        """Run one request. Called in a worker thread. Raise BadRequestError for bad input."""

    @abc.abstractmethod
    def cleanup(self) -> None:
        """Release the model's resources. Called once at shutdown, on the worker pool."""

    def process_batch(self, batch: list[dict[str, Any]]) -> list[dict[str, Any] | Exception]:
        """Run several requests in one call (used when max_batch_size > 1). Called in a worker thread.

        Return one entry per request, in order: a result dict, or an Exception (e.g.
        BadRequestError) that becomes that request's error reply alone. Override to share one
        forward pass; this default simply runs the requests one after the other.
        """
        results: list[dict[str, Any] | Exception] = []
        for data in batch:
            try:
                results.append(self.process_inference(data))
            except Exception as exc:
                results.append(exc)
        return results

    @property
    def batching(self) -> bool:
        return self.max_batch_size > 1

    def model_info(self) -> dict[str, Any]:
        """What `pong` reports about the model; subclasses may add keys."""
        return {
            "name": self.model_name or type(self).__name__,
            "version": self.model_version,
            "device": self.device,
        }

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Serve until SIGTERM/SIGINT or `stop()`; blocks (the seed's `backend.start()`)."""
        run_event_loop(self.serve(install_signal_handlers=True))

    def stop(self) -> None:
        """Ask a running server to drain and stop. Safe to call from any thread."""
        loop, event = self._loop, self._stop_event
        if loop is not None and event is not None and not loop.is_closed():
            loop.call_soon_threadsafe(event.set)

    async def serve(self, *, install_signal_handlers: bool = False) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._slots = asyncio.Semaphore(self.max_concurrency)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.max_concurrency, thread_name_prefix=f"{type(self).__name__}-worker"
        )
        batch_loop: asyncio.Task | None = None
        if self.batching:
            self._batcher = BatchCollector(self.max_batch_size, self.max_queue_delay_ms)
            batch_loop = asyncio.create_task(self._batch_loop())
        if install_signal_handlers:
            stop_on_signals(self._stop_event)
        process_request = make_process_request(
            {"/healthz": json_endpoint(self._healthz), "/readyz": json_endpoint(self._readyz)}
        )
        server = await serve(
            self._handle_connection,
            self.host,
            self.port,
            process_request=process_request,
            max_size=self.max_message_size,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
            compression=None,  # frames are mostly base64 images: deflate costs CPU and saves little
        )
        self.bound_port = server.sockets[0].getsockname()[1]
        logger.info("%s listening on ws://%s:%s", type(self).__name__, self.host, self.bound_port)
        self.ready_event.set()
        init_task = asyncio.create_task(self._initialize())
        try:
            stop_task = asyncio.create_task(self._stop_event.wait())
            await asyncio.wait({init_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
            if init_task.done() and self.status == UNHEALTHY and self.exit_on_init_failure:
                raise ModelInitializationError(self.init_error or "initialize_model failed")
            await stop_task
        finally:
            await self._shutdown(server, init_task)
            if batch_loop is not None:
                batch_loop.cancel()

    async def _initialize(self) -> None:
        # The model is loaded on the worker pool that will run it: with the default single worker,
        # load, warm-up and inference share one thread. Frameworks with per-thread state (an OpenMP
        # thread team per calling thread, as in PyTorch on CPU) slow down 2-3x when a second
        # thread ever calls them: the idle team spins against the busy one.
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self.initialize_model)
        except Exception as exc:  # any failure leaves the server up and reporting why
            self.status = UNHEALTHY
            self.init_error = f"{type(exc).__name__}: {exc}"
            logger.exception("initialize_model failed; reporting unhealthy")
        else:
            self.status = HEALTHY
            logger.info("model ready: %s", self.model_info())

    async def _shutdown(self, server, init_task: asyncio.Task) -> None:
        logger.info("shutting down: no new work, draining %d in-flight request(s)", self._admitted)
        self._draining = True
        await drain_and_close(server, self._idle, self.grace_period)
        if not init_task.done():
            init_task.cancel()
        # cleanup() on the worker pool too, after work still queued there; a model call stuck past
        # its timeout must not hold the process forever.
        cleanup = asyncio.get_running_loop().run_in_executor(self._executor, self.cleanup)
        try:
            await asyncio.wait_for(asyncio.shield(cleanup), timeout=max(self.grace_period, 1.0))
        except TimeoutError:
            logger.error(
                "cleanup did not run within %.1fs (a worker is still busy); exiting without it", self.grace_period
            )
        except Exception:
            logger.exception("cleanup failed")
        self._executor.shutdown(wait=False, cancel_futures=True)
        logger.info("stopped")

    # ---- HTTP probes -------------------------------------------------------------------------

    def _healthz(self) -> tuple[int, dict[str, Any]]:
        return 200, {"status": "alive"}

    def _readyz(self) -> tuple[int, dict[str, Any]]:
        ready = self.status == HEALTHY and not self._draining
        body: dict[str, Any] = {"status": "draining" if self._draining else self.status}
        if self.init_error:
            body["error"] = self.init_error
        return (200 if ready else 503), body

    # ---- WebSocket protocol ------------------------------------------------------------------

    def pong_message(self, request_id: str | None) -> dict[str, Any]:
        info: dict[str, Any] = {
            "model": self.model_info(),
            "in_flight": self._admitted,
            "uptime_s": round(time.monotonic() - self._started_at, 3),
        }
        if self.init_error:
            info["error"] = self.init_error
        if self._batcher is not None:
            info["batching"] = self._batcher.stats()
        status = "draining" if self._draining and self.status == HEALTHY else self.status
        return messages.pong(status, request_id, **info)

    async def _handle_connection(self, connection: ServerConnection) -> None:
        logger.debug("connection from %s", connection.remote_address)
        await read_frames(connection, self._handle_frame)

    async def _handle_frame(self, connection: ServerConnection, frame, tasks: set[asyncio.Task]) -> None:
        received_at = time.monotonic()
        try:
            msg = messages.parse_message(frame, _ALLOWED_TYPES)
        except ProtocolError as exc:
            await send_message(connection, messages.error_message(exc.request_id, exc.code, exc.message))
            return
        if msg.type == messages.HEALTH_CHECK:
            await send_message(connection, self.pong_message(msg.request_id))
            return
        refusal = self._admission_refusal()
        if refusal is not None:
            code, text = refusal
            await send_message(connection, messages.error_message(msg.request_id, code, text))
            return
        self._admitted += 1
        self._idle.clear()
        task = asyncio.create_task(self._answer(connection, msg.request_id, msg.data, received_at))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def _admission_refusal(self) -> tuple[ErrorCode, str] | None:
        if self._draining:
            return ErrorCode.UNAVAILABLE, "backend is shutting down"
        if self.status == LOADING:
            return ErrorCode.UNAVAILABLE, "model is still loading"
        if self.status == UNHEALTHY:
            return ErrorCode.UNAVAILABLE, f"model failed to initialize: {self.init_error}"
        if self._admitted >= self.max_concurrency + self.max_queue:
            return (
                ErrorCode.OVERLOADED,
                f"backend is at capacity ({self.max_concurrency} running + {self.max_queue} queued)",
            )
        return None

    async def _answer(self, connection: ServerConnection, request_id: str, data: dict, received_at: float) -> None:
        try:
            reply = await self._run_request(request_id, data, received_at)
            await send_message(connection, reply)
        finally:
            self._admitted -= 1
            if self._admitted == 0:
                self._idle.set()

    async def _run_request(self, request_id: str, data: dict, received_at: float) -> dict[str, Any]:
        deadline = received_at + self.request_timeout
        if self._batcher is not None:
            future = self._batcher.submit(data, received_at)
        else:
            try:
                await asyncio.wait_for(self._slots.acquire(), timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                return messages.error_message(
                    request_id, ErrorCode.TIMEOUT, f"request waited longer than {self.request_timeout:g}s for a worker"
                )
            future = self._run_in_worker(self._timed_inference, data)
        try:
            outcome = await asyncio.wait_for(asyncio.shield(future), timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            if self._batcher is not None:
                future.cancel()  # a batch not yet formed skips it; a running one ignores it
            else:
                # Never cancel the executor future: its done-callback would free the slot while
                # the thread still runs.
                future.add_done_callback(_log_late_failure)
            return messages.error_message(
                request_id, ErrorCode.TIMEOUT, f"inference took longer than {self.request_timeout:g}s"
            )
        except ProtocolError as exc:
            return messages.error_message(request_id, exc.code, exc.message)
        except Exception as exc:
            logger.error("process_inference failed for request %s", request_id, exc_info=exc)
            return messages.error_message(request_id, ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}")
        result, started_at, finished_at, batch_size = outcome
        if not isinstance(result, dict):
            return messages.error_message(
                request_id, ErrorCode.INTERNAL, f"process_inference returned {type(result).__name__}, not a dict"
            )
        timing = {
            "queue_ms": round((started_at - received_at) * 1000, 3),
            "compute_ms": round((finished_at - started_at) * 1000, 3),
        }
        if self._batcher is not None:
            timing["batch_size"] = batch_size
        return messages.inference_response(request_id, result, timing=timing)

    def _run_in_worker(self, fn, *args) -> asyncio.Future:
        """Run fn in the pool; the slot (already acquired) is released when the call really ends,
        even if its reply already went out as `timeout`: a thread cannot be cancelled, and the
        concurrency bound must stay true."""
        future = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        future.add_done_callback(lambda _f: self._slots.release())
        return future

    def _timed_inference(self, data: dict) -> tuple[Any, float, float, int]:
        started_at = time.monotonic()
        result = self.process_inference(data)
        return result, started_at, time.monotonic(), 1

    def _timed_batch(self, batch: list[dict]) -> tuple[list[Any], float, float]:
        started_at = time.monotonic()
        results = self.process_batch(batch)
        return results, started_at, time.monotonic()

    async def _batch_loop(self) -> None:
        while True:
            # Wait for a free worker first: the batch then holds everything queued meanwhile,
            # and nothing that timed out while waiting is computed.
            await self._slots.acquire()
            batch = await self._batcher.next_batch()
            if not batch:
                self._slots.release()
                continue
            future = self._run_in_worker(self._timed_batch, [item.data for item in batch])
            future.add_done_callback(lambda f, batch=batch: _distribute(batch, f))


def _distribute(batch: list[PendingItem], done: asyncio.Future) -> None:
    """Hand each request of a finished batch its own result or exception."""
    if done.cancelled():
        error: Exception = RuntimeError("batch cancelled at shutdown")
        outcomes = [error] * len(batch)
        started_at = finished_at = time.monotonic()
    elif done.exception() is not None:
        outcomes = [done.exception()] * len(batch)
        started_at = finished_at = time.monotonic()
    else:
        results, started_at, finished_at = done.result()
        if not isinstance(results, list) or len(results) != len(batch):
            got = len(results) if isinstance(results, list) else type(results).__name__
            outcomes = [RuntimeError(f"process_batch returned {got} results for {len(batch)} requests")] * len(batch)
        else:
            outcomes = results
    for item, outcome in zip(batch, outcomes, strict=True):
        if item.future.done():
            continue
        if isinstance(outcome, BaseException):
            item.future.set_exception(outcome)
        else:
            item.future.set_result((outcome, started_at, finished_at, len(batch)))


def _log_late_failure(future: asyncio.Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        exc = future.exception()
        if not isinstance(exc, BadRequestError):
            logger.error("a timed-out request later failed: %s: %s", type(exc).__name__, exc)
