"""BaseModelBackend: the server side of every model backend.

Mirrors the seed's API (and Triton's Python backend `initialize / execute / finalize`): a subclass
implements `initialize_model()` and `process_inference(data) -> dict` (or `process_batch(list) ->
list` to share one forward pass), optionally `cleanup()`; `start()` serves until SIGTERM/SIGINT or
`stop()`.

What the base class guarantees:
- model work runs on a worker pool, never on the event loop, so health checks and WebSocket
  keepalive are answered while a model computes; `data` is decoded on the worker too;
- one execution path: every request goes through one bounded collector (`batching`), in batches of
  up to `max_batch_size` (1: one request per call);
- every inference_request gets exactly one reply: a result, or an `error` with a code
  (`bad_request`, `timeout`, `overloaded`, `unavailable`, `internal`);
- work is bounded by count (`max_concurrency` running + `max_queue` waiting) and by bytes
  (`server.ServerLimits`); beyond that the reply is `overloaded` at once; a timed-out request
  leaves the queue at once;
- `data` reaches the model as a `fields.RequestData`: a dict whose `owner` names the client whose
  sessions it may touch (`fields.common_fields(data).session_key`);
- `GET /healthz` (alive) and `GET /readyz` (model ready) answer plain HTTP on the same port;
- on shutdown it stops accepting work, finishes in-flight requests within `grace_period`, then
  calls `cleanup()`.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import contextlib
import enum
import logging
import threading
import time
from typing import Any

from . import logs, messages
from .auth import TokenAuth
from .batching import BatchCollector, PendingItem
from .deadlines import Deadlines
from .errors import BadRequestError, ErrorCode, ProtocolError
from .eventloop import run_event_loop, stop_on_signals
from .fields import MAX_SESSION_ID_LENGTH, RequestData
from .http_endpoints import json_endpoint
from .limits import (
    DEFAULT_GRACE_PERIOD,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_QUEUE,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
    DEFAULT_REQUEST_TIMEOUT,
)
from .reload import (
    RELOAD_FRAME,
    RELOAD_MODEL,
    ModelVersion,
    ReloadArgs,
    ReloadPhase,
    ReloadRefused,
    ReloadState,
    VersionHistory,
    accepted_message,
    disk_size,
    inside,
    memory_check,
    model_digest,
)
from .server import Peer, ProtocolServer, ServerLimits
from .threads import apply_thread_budget, cpu_allowance, thread_budget

logger = logging.getLogger(__name__)


class ModelStatus(enum.StrEnum):
    """What `pong.status` and `/readyz` say about the model."""

    LOADING = "loading"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


LOADING = ModelStatus.LOADING
HEALTHY = ModelStatus.HEALTHY
UNHEALTHY = ModelStatus.UNHEALTHY

_ALLOWED_TYPES = frozenset({messages.INFERENCE_REQUEST, messages.HEALTH_CHECK, RELOAD_MODEL})


class ModelInitializationError(RuntimeError):
    """Raised by `serve()` when `initialize_model` failed and `exit_on_init_failure` is set."""


class BaseModelBackend(abc.ABC):
    """Subclass this; implement `initialize_model` and `process_inference` (or `process_batch`)."""

    model_name: str = ""
    model_version: str = "0"
    # True only for a model cheap enough to run on the event loop itself (microseconds per batch,
    # no torch: its thread pools belong to the worker): requests then skip the thread hand-off.
    run_inline: bool = False
    allowed_types = _ALLOWED_TYPES

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
        threads: int | None = None,
        api_tokens: tuple[str, ...] | list[str] = (),
        server_limits: ServerLimits | None = None,
        model_history: int = 5,
        max_reload_memory_bytes: int | None = None,
        model_poll_interval_s: float = 0.0,
        model_repository: str | None = None,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        if max_queue < 0:
            raise ValueError("max_queue must be >= 0")
        if request_timeout <= 0:
            raise ValueError("request_timeout must be > 0")
        if (
            type(self).process_inference is BaseModelBackend.process_inference
            and type(self).process_batch is BaseModelBackend.process_batch
        ):
            raise TypeError(f"{type(self).__name__} must implement process_inference or process_batch")
        BatchCollector(max_batch_size, max_queue_delay_ms)  # validates the two limits now
        self._implements_batch = type(self).process_batch is not BaseModelBackend.process_batch
        self.host = host
        self.port = port
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.request_timeout = request_timeout
        self.grace_period = grace_period
        self.exit_on_init_failure = exit_on_init_failure
        self.max_batch_size = max_batch_size
        self.max_queue_delay_ms = max_queue_delay_ms
        self.thread_override = threads  # None: derive from the CPU allowance
        self.server_limits = server_limits or ServerLimits()
        self.server_limits.max_message_size = max_message_size
        self.server_limits.grace_period = grace_period
        self.server_limits.ping_interval = ping_interval
        self.server_limits.ping_timeout = ping_timeout
        self.auth = TokenAuth(api_tokens)
        self.device: str = "cpu"
        self.status: ModelStatus = LOADING
        self.init_error: str | None = None
        self.thread_info: dict[str, Any] | None = None
        self.bound_port: int | None = None  # the real port once listening (port=0 picks one)
        self._started_at = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._server: ProtocolServer | None = None
        self._collector: BatchCollector | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._slots: asyncio.Semaphore | None = None
        self._admitted = 0  # requests in the collector or on a worker, not yet answered
        self.listening = threading.Event()  # set once the socket listens (for tests/embedding)
        self.stuck_worker = False  # set when cleanup could not run: the process must exit hard
        # Hot reload (shared_protocol.reload): versions, history, state, the between-batches gate.
        self.model_history = VersionHistory(model_history)
        self.max_reload_memory_bytes = max_reload_memory_bytes
        self.model_poll_interval_s = model_poll_interval_s
        self.model_repository = model_repository
        self.reload_state = ReloadState()
        self.loaded_model_path: str | None = None
        self._gate = _SwapGate()
        self._loader: concurrent.futures.ThreadPoolExecutor | None = None
        self._reload_task: asyncio.Task | None = None
        self._poll_task: asyncio.Task | None = None

    @property
    def ready_event(self) -> threading.Event:
        """Former name of `listening` (it never meant the model was ready)."""
        return self.listening

    @property
    def max_message_size(self) -> int:
        return self.server_limits.max_message_size

    # ---- the subclass API (the seed's) -------------------------------------------------------

    @abc.abstractmethod
    def initialize_model(self) -> None:
        """Load the model. Called once, on the worker pool, after the server is listening."""

    def process_inference(self, data: dict[str, Any]) -> dict[str, Any]:
        """Run one request (worker thread). Raise BadRequestError for bad input."""
        result = self.process_batch([data])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def process_batch(self, batch: list[dict[str, Any]]) -> list[dict[str, Any] | Exception]:
        """Run several requests in one call (worker thread).

        Return one entry per request, in order: a result dict, or an Exception (e.g.
        BadRequestError) that becomes that request's error reply alone. Override to share one
        forward pass; this default runs the requests one after the other.
        """
        results: list[dict[str, Any] | Exception] = []
        for data in batch:
            try:
                results.append(self.process_inference(data))
            except Exception as exc:
                results.append(exc)
        return results

    def cleanup(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Release the model's resources. Called once at shutdown, on the worker pool."""

    # ---- optional hot-reload hooks (docs/CONTRACTS.md "Hot reload") ------------------------------

    def model_source(self) -> str | None:
        """The file or directory the model was loaded from at start-up (None: no model files)."""
        return None

    def load_model(self, source: str) -> Any:
        """Build and warm up a new model from `source` without touching the live one (loader thread).
        Raise to refuse it: the live model keeps serving. Implement with `swap_model` to allow reloads."""
        raise NotImplementedError

    def swap_model(self, loaded: Any) -> None:
        """Make `loaded` (from load_model) the live model (worker thread, between batches)."""
        raise NotImplementedError

    @property
    def reloadable(self) -> bool:
        return type(self).load_model is not BaseModelBackend.load_model

    @property
    def batching(self) -> bool:
        return self.max_batch_size > 1

    def model_info(self) -> dict[str, Any]:
        """What `pong` reports about the model; subclasses may add keys."""
        info: dict[str, Any] = {
            "name": self.model_name or type(self).__name__,
            "version": self.model_version,
            "device": self.device,
        }
        if self.thread_info is not None:
            info["threads"] = self.thread_info
        if self.reloadable:
            info["path"] = self.loaded_model_path
            info["reload"] = self.reload_state.to_dict()
            info["versions"] = self.model_history.to_list()
        return info

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
        batch_loop = await self.open_runtime()
        if install_signal_handlers:
            stop_on_signals(self._stop_event)
        await self._server.start()
        self.bound_port = self._server.bound_port
        logger.info("%s listening on ws://%s:%s", type(self).__name__, self.host, self.bound_port)
        self.listening.set()
        init_task = asyncio.create_task(self._initialize())
        try:
            stop_task = asyncio.create_task(self._stop_event.wait())
            await asyncio.wait({init_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
            if init_task.done() and self.status == UNHEALTHY and self.exit_on_init_failure:
                raise ModelInitializationError(self.init_error or "initialize_model failed")
            await stop_task
        finally:
            await self._shutdown(init_task)
            batch_loop.cancel()

    async def open_runtime(self) -> asyncio.Task:
        """Everything but the socket: worker pool, collector, batch loop and the server core (not yet
        listening). `serve` listens on it; `shared_protocol.testing` drives it without a socket."""
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        self._slots = asyncio.Semaphore(self.max_concurrency)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.max_concurrency, thread_name_prefix=f"{type(self).__name__}-worker"
        )
        self._collector = BatchCollector(self.max_batch_size, self.max_queue_delay_ms)
        self._deadlines = Deadlines()
        self._loader = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-loader")
        self._server = _BackendServer(
            self,
            self.host,
            self.port,
            limits=self.server_limits,
            auth=self.auth,
            endpoints={"/healthz": json_endpoint(self._healthz), "/readyz": json_endpoint(self._readyz)},
            name=type(self).__name__,
        )
        return asyncio.create_task(self._batch_loop())

    def _load_on_worker(self) -> None:
        # The thread budget first: libraries size their pools when first used.
        budget = thread_budget(cpu_allowance(), override=self.thread_override)
        self.thread_info = apply_thread_budget(budget)
        logger.info(
            "thread budget: %s (allowance %.2f CPUs from %s)",
            self.thread_info["budget"],
            budget.allowance,
            budget.source,
        )
        self.initialize_model()
        source = self.model_source() if self.reloadable else None
        if source:  # the model is named by its files' digest from now on
            self.model_version = model_digest(source)
            self.loaded_model_path = str(source)
            self.model_history.add(ModelVersion(self.model_version, self.loaded_model_path))

    async def _initialize(self) -> None:
        # The model is loaded on the worker pool that will run it: with the default single worker,
        # load, warm-up and inference share one thread. Frameworks with per-thread state (an OpenMP
        # thread team per calling thread, as in PyTorch on CPU) slow down 2-3x when a second
        # thread ever calls them: the idle team spins against the busy one.
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._load_on_worker)
        except Exception as exc:  # any failure leaves the server up and reporting why
            self.status = UNHEALTHY
            self.init_error = f"{type(exc).__name__}: {exc}"
            logger.exception("initialize_model failed; reporting unhealthy")
        else:
            self.status = HEALTHY
            logger.info("model ready: %s", self.model_info())
            if self.reloadable and self.model_poll_interval_s > 0 and self.loaded_model_path:
                self._poll_task = asyncio.create_task(self._poll_model_path())

    async def _shutdown(self, init_task: asyncio.Task) -> None:
        logger.info("shutting down: no new work, draining %d in-flight request(s)", self._admitted)
        await self._server.drain_and_close()
        if not init_task.done():
            init_task.cancel()
        for task in (self._poll_task, self._reload_task):
            if task is not None and not task.done():
                task.cancel()
        if self._loader is not None:
            self._loader.shutdown(wait=False, cancel_futures=True)
        # cleanup() on the worker pool too, after work still queued there; a model call stuck past
        # its timeout must not hold the process forever.
        cleanup = asyncio.get_running_loop().run_in_executor(self._executor, self.cleanup)
        try:
            await asyncio.wait_for(asyncio.shield(cleanup), timeout=max(self.grace_period, 1.0))
        except TimeoutError:
            logger.error(
                "cleanup did not run within %.1fs (a worker is still busy); exiting without it", self.grace_period
            )
            # A stuck worker thread would keep the interpreter from exiting (it joins pool threads at
            # exit): run_backend ends the process hard instead.
            self.stuck_worker = True
        except Exception:
            logger.exception("cleanup failed")
        self._executor.shutdown(wait=False, cancel_futures=True)
        logger.info("stopped")

    @property
    def _draining(self) -> bool:
        return self._server is not None and self._server.draining

    # ---- HTTP probes -------------------------------------------------------------------------

    def _healthz(self) -> tuple[int, dict[str, Any]]:
        return 200, {"status": "alive"}

    def _readyz(self) -> tuple[int, dict[str, Any]]:
        ready = self.status == HEALTHY and not self._draining
        body: dict[str, Any] = {"status": "draining" if self._draining else str(self.status)}
        body["model"] = {"name": self.model_info()["name"], "version": self.model_version}
        if self.init_error:  # model backends sit on an internal network: the operator needs the reason
            body["error"] = self.init_error
        if self.thread_info is not None:
            body["threads"] = self.thread_info["budget"]
        if self.reloadable:
            body["model"]["reload"] = self.reload_state.to_dict()
        return (200 if ready else 503), body

    # ---- the server core's handler -----------------------------------------------------------

    def pong_message(self, request_id: str | None) -> dict[str, Any]:
        info: dict[str, Any] = {
            "model": self.model_info(),
            "in_flight": self._admitted,
            "uptime_s": round(time.monotonic() - self._started_at, 3),
        }
        if self.init_error:
            info["error"] = self.init_error
        if self.batching and self._collector is not None:
            info["batching"] = self._collector.stats()
        status = "draining" if self._draining and self.status == HEALTHY else str(self.status)
        return messages.pong(status, request_id, **info)

    def control_reply(self, peer: Peer, msg: messages.Message) -> dict[str, Any]:
        if msg.type == RELOAD_MODEL:  # _BackendServer hands the whole frame to reload_reply
            return {"type": RELOAD_FRAME, "request_id": msg.request_id}
        return self.pong_message(msg.request_id)

    def admit(self, peer: Peer, msg: messages.Message) -> tuple[ErrorCode, str] | None:
        if self.status == LOADING:
            return ErrorCode.UNAVAILABLE, "model is still loading"
        if self.status == UNHEALTHY:
            return ErrorCode.UNAVAILABLE, f"model failed to initialize: {self.init_error}"
        if self._admitted >= self.max_concurrency + self.max_queue:
            return (
                ErrorCode.OVERLOADED,
                f"backend is at capacity ({self.max_concurrency} running + {self.max_queue} queued)",
            )
        self._admitted += 1
        return None

    async def handle(self, peer: Peer, msg: messages.Message) -> dict[str, Any]:
        received_at = time.monotonic()
        try:
            reply = await self._run_request(
                msg.request_id, msg.data_raw, _session_owner(peer, msg), received_at, msg.codec
            )
        finally:
            self._admitted -= 1
        return _finished(msg, reply, received_at)

    def answer_now(self, peer: Peer, msg: messages.Message) -> dict[str, Any] | None:
        """The reply to an admitted request computed at once, or None (then `handle` runs it).

        Only a `run_inline` model without batching, with nothing queued ahead of this request,
        answers at once: its batch would be this request alone, computed on the event loop
        either way, so the task, the collector and the batch loop's hand-off add only cost (~20 %
        of such a backend's CPU per request at 16 requests in flight, docs/benchmarks.md)."""
        if not self.run_inline or self.max_batch_size != 1 or len(self._collector):
            return None
        received_at = started_at = time.monotonic()
        version = None
        try:
            try:
                data = messages.decode_data(msg.data_raw, codec=msg.codec)
                with self._gate.reading():
                    version = self.model_version
                    started_at = time.monotonic()
                    outcome: Any = self._compute([RequestData(data, _session_owner(peer, msg), received_at)])[0]
            except Exception as exc:
                outcome = exc
            self._collector.record(1)
            reply = _outcome_reply(
                msg.request_id, outcome, received_at, started_at, time.monotonic(), 1, version, self.batching
            )
        finally:
            self._admitted -= 1
        return _finished(msg, reply, received_at)

    async def _run_request(
        self, request_id: str, payload: Any, owner: str, received_at: float, codec: str = messages.JSON
    ) -> dict[str, Any]:
        deadline = received_at + self.request_timeout
        item = self._collector.submit(payload, owner, received_at, codec)
        # One loop timer for every request's deadline (shared_protocol.deadlines): on timeout the
        # item's future gets TimeoutError; a batch already computing it ignores that.
        self._deadlines.add(item.future, max(0.0, deadline - time.monotonic()))
        try:
            outcome = await item.future
        except TimeoutError:
            self._collector.discard(item)  # a batch not yet formed drops it; a running one ignores it
            return messages.error_message(
                request_id, ErrorCode.TIMEOUT, f"inference took longer than {self.request_timeout:g}s"
            )
        except Exception as exc:
            return _outcome_reply(request_id, exc, received_at, received_at, received_at, 1, None, self.batching)
        finally:
            self._deadlines.discard(item.future)
        result, started_at, finished_at, batch_size, version = outcome
        return _outcome_reply(
            request_id, result, received_at, started_at, finished_at, batch_size, version, self.batching
        )

    # ---- hot reload (the event loop side) ----------------------------------------------------

    def reload_reply(self, peer: Peer, frame: str | bytes, request_id: str | None) -> dict[str, Any]:
        """The immediate reply to `reload_model`: `reload_accepted` (the reload runs in the background;
        its outcome shows in pong `model.reload`) or an `error` saying why it cannot start."""
        try:
            if self.auth.enabled and not peer.authenticated:
                raise ReloadRefused("reload_model needs an authenticated connection")
            if not isinstance(frame, str):
                raise ReloadRefused("reload_model must be a JSON text frame")
            args = ReloadArgs.parse(frame)
            source = self._reload_source(args)
            self._check_reload_memory(source)
        except ReloadRefused as exc:
            self.reload_state.refused += 1
            logger.warning("reload refused: %s", exc)
            return messages.error_message(request_id, ErrorCode.BAD_REQUEST, str(exc))
        self.start_reload(source, args.version)
        return accepted_message(request_id, source, args.version)

    def start_reload(self, source: str, expected_version: str | None = None) -> None:
        self.reload_state.begin(source)
        self._reload_task = asyncio.create_task(self._reload(source, expected_version))

    def _reload_source(self, args: ReloadArgs) -> str:
        if not self.reloadable:
            raise ReloadRefused(f"{type(self).__name__} cannot reload its model (no load_model)")
        if self.status != HEALTHY or self._draining:
            raise ReloadRefused(f"the model is {self.status if not self._draining else 'draining'}, not healthy")
        if self.reload_state.phase == ReloadPhase.LOADING:
            raise ReloadRefused(f"a reload of {self.reload_state.target} is already running")
        if args.path is not None:
            root = self.model_repository or (str(_parent(self.loaded_model_path)) if self.loaded_model_path else None)
            if root is None or not inside(args.path, root):
                raise ReloadRefused(f"path {args.path!r} is outside the model repository {root!r}")
            return args.path
        if args.version is not None:
            entry = self.model_history.get(args.version)
            if entry is None:
                known = [v["version"] for v in self.model_history.to_list()]
                raise ReloadRefused(f"unknown version {args.version!r}; known: {known}")
            return entry.source
        if not self.loaded_model_path:
            raise ReloadRefused("no model path is loaded: name one with 'path'")
        return self.loaded_model_path  # the same path again: picks up files replaced there

    def _check_reload_memory(self, source: str) -> None:
        try:
            size = disk_size(source)
        except OSError as exc:
            raise ReloadRefused(f"cannot read {source}: {exc}") from None
        memory_check(size, self.max_reload_memory_bytes)

    async def _reload(self, source: str, expected_version: str | None) -> None:
        loop = asyncio.get_running_loop()
        try:
            version, loaded = await loop.run_in_executor(self._loader, self._load_version, source, expected_version)
            if loaded is not None:
                # On the worker pool, behind the batches already queued there: in-flight batches
                # finish on the old model, the next ones run on the new one.
                await loop.run_in_executor(self._executor, self._swap_on_worker, loaded, version, source)
        except Exception as exc:  # the live model keeps serving
            self.reload_state.fail(f"{type(exc).__name__}: {exc}")
            logger.error("reload of %s failed; %s keeps serving: %s", source, self.model_version, exc)
            return
        self.model_history.add(ModelVersion(version, source))
        self.reload_state.succeed()
        logger.info("model reloaded: version %s from %s", version, source)

    def _load_version(self, source: str, expected_version: str | None) -> tuple[str, Any]:
        """(version, loaded model) on the loader thread; (version, None) when it is already live."""
        version = model_digest(source)
        if expected_version is not None and version != expected_version:
            raise ReloadRefused(f"{source} now holds version {version}, not {expected_version}")
        if version == self.model_version and source == self.loaded_model_path:
            return version, None
        return version, self.load_model(source)

    def _swap_on_worker(self, loaded: Any, version: str, source: str) -> None:
        with self._gate.writing():
            self.swap_model(loaded)
            self.model_version = version
            self.loaded_model_path = source

    async def _poll_model_path(self) -> None:
        """Reload when the files at the live path change (model_poll_interval_s > 0)."""
        loop = asyncio.get_running_loop()
        failed_version: str | None = None
        while True:
            await asyncio.sleep(self.model_poll_interval_s)
            if self.reload_state.phase == ReloadPhase.LOADING or self.status != HEALTHY or self._draining:
                continue
            path = self.loaded_model_path
            try:
                version = await loop.run_in_executor(self._loader, model_digest, path)
            except OSError as exc:  # mid-copy or removed: look again next time
                logger.debug("poll: cannot read %s: %s", path, exc)
                continue
            if version in (self.model_version, failed_version):
                continue
            logger.info("poll: %s changed to %s; reloading", path, version)
            self.start_reload(path, version)
            await self._reload_task
            failed_version = version if self.reload_state.phase == ReloadPhase.FAILED else None

    # ---- the worker side ---------------------------------------------------------------------

    async def _batch_loop(self) -> None:
        while True:
            # Wait for a free worker first: the batch then holds everything queued meanwhile,
            # and nothing that timed out while waiting is computed.
            await self._slots.acquire()
            batch = await self._collector.next_batch()
            if not batch:
                self._slots.release()
                continue
            if self.run_inline:
                self._run_inline(batch)
                continue
            # The slot is released when the call really ends, even if its replies already went out
            # as `timeout`: a thread cannot be cancelled, and the concurrency bound must stay true.
            future = asyncio.get_running_loop().run_in_executor(self._executor, self._run_batch_gated, batch)
            future.add_done_callback(lambda _f: self._slots.release())
            future.add_done_callback(lambda f, batch=batch: _distribute(batch, f))

    def _run_inline(self, batch: list[PendingItem]) -> None:
        """A batch computed on the event loop itself (`run_inline`): no thread hand-off."""
        done = asyncio.get_running_loop().create_future()
        try:
            done.set_result(self._run_batch_gated(batch))
        except Exception as exc:
            done.set_exception(exc)
        self._slots.release()
        _distribute(batch, done)

    def _run_batch_gated(self, batch: list[PendingItem]) -> tuple[list[Any], float, float, str]:
        """`_run_batch` while no swap runs; with the version of the model that computed it."""
        with self._gate.reading():
            version = self.model_version
            outcomes, started_at, finished_at = self._run_batch(batch)
        return outcomes, started_at, finished_at, version

    def _run_batch(self, batch: list[PendingItem]) -> tuple[list[Any], float, float]:
        """Decode every request's data, then one model call for the valid ones (worker thread)."""
        started_at = time.monotonic()
        outcomes: list[Any] = [None] * len(batch)
        valid: list[int] = []
        inputs: list[RequestData] = []
        for i, item in enumerate(batch):
            try:
                data = messages.decode_data(item.payload, codec=item.codec)
                inputs.append(RequestData(data, item.owner, item.received_at))
                valid.append(i)
            except BadRequestError as exc:
                outcomes[i] = exc
            item.payload = None  # the text is no longer needed: free it with the decode
        if inputs:
            for i, result in zip(valid, self._compute(inputs), strict=True):
                outcomes[i] = result
        return outcomes, started_at, time.monotonic()

    def _compute(self, inputs: list[RequestData]) -> list[Any]:
        """One model call for decoded requests: each one's result, or the exception it raised (a
        process_batch that raises fails them all: the exception propagates)."""
        # One path: a backend with its own process_batch gets every batch (even of one);
        # otherwise each request goes to process_inference.
        if len(inputs) == 1 and not self._implements_batch:
            try:
                return [self.process_inference(inputs[0])]
            except Exception as exc:
                return [exc]
        results = self.process_batch(inputs)
        if not isinstance(results, list) or len(results) != len(inputs):
            got = len(results) if isinstance(results, list) else type(results).__name__
            error = RuntimeError(f"process_batch returned {got} results for {len(inputs)} requests")
            return [error] * len(inputs)
        return results


def _finished(msg: messages.Message, reply: dict[str, Any], received_at: float) -> dict[str, Any]:
    """The trace id on the reply, and the request's log line when its level is on."""
    if msg.trace_id is not None:
        reply["trace_id"] = msg.trace_id  # back to the gateway, which logs it too
    code = reply.get("code")
    level = logging.INFO if code not in (None, ErrorCode.BAD_REQUEST.value) else logging.DEBUG
    if not logger.isEnabledFor(level):  # the common case: no log fields built per request
        return reply
    logger.log(
        level,
        "request %s",
        "answered" if code is None else f"failed: {reply.get('error')}",
        extra=logs.request_fields(
            request_id=msg.request_id,
            trace_id=msg.trace_id,
            code=code or "ok",
            duration_ms=round((time.monotonic() - received_at) * 1000, 3),
        ),
    )
    return reply


def _outcome_reply(
    request_id: str,
    result: Any,
    received_at: float,
    started_at: float,
    finished_at: float,
    batch_size: int,
    version: str | None,
    batching: bool,
) -> dict[str, Any]:
    """One request's reply from its model outcome (a result, or the exception it raised)."""
    if isinstance(result, ProtocolError):
        return messages.error_message(request_id, result.code, result.message)
    if isinstance(result, Exception):
        logger.error("process_inference failed for request %s", request_id, exc_info=result)
        return messages.error_message(request_id, ErrorCode.INTERNAL, f"{type(result).__name__}: {result}")
    if not isinstance(result, dict):
        return messages.error_message(
            request_id, ErrorCode.INTERNAL, f"process_inference returned {type(result).__name__}, not a dict"
        )
    timing = {
        "queue_ms": round((started_at - received_at) * 1000, 3),
        "compute_ms": round((finished_at - started_at) * 1000, 3),
    }
    if batching:
        timing["batch_size"] = batch_size
    # The version that computed this result: a reload switches it between two batches.
    return messages.inference_response(request_id, result, timing=timing, model_version=version)


def _session_owner(peer: Peer, msg: messages.Message) -> str:
    """The owner of the request's sessions: the one the gateway names for its client (a peer that
    passed the handshake — on the internal network, or holding the token when one is set), else
    this connection."""
    owner = msg.session_owner
    if isinstance(owner, str) and 0 < len(owner) <= MAX_SESSION_ID_LENGTH and owner.isprintable():
        return "via-" + owner
    return peer.owner


def _distribute(batch: list[PendingItem], done: asyncio.Future) -> None:
    """Hand each request of a finished batch its own result or exception."""
    if done.cancelled():
        outcomes: list[Any] = [RuntimeError("batch cancelled at shutdown")] * len(batch)
        started_at = finished_at = time.monotonic()
        version = None
    elif done.exception() is not None:
        outcomes = [done.exception()] * len(batch)
        started_at = finished_at = time.monotonic()
        version = None
    else:
        outcomes, started_at, finished_at, version = done.result()
    for item, outcome in zip(batch, outcomes, strict=True):
        if item.future.done():
            _log_late_failure(outcome)
            continue
        if isinstance(outcome, BaseException):
            item.future.set_exception(outcome)
        else:
            item.future.set_result((outcome, started_at, finished_at, len(batch), version))


def _log_late_failure(outcome: Any) -> None:
    if isinstance(outcome, Exception) and not isinstance(outcome, BadRequestError):
        logger.error("a timed-out request later failed: %s: %s", type(outcome).__name__, outcome)


class _BackendServer(ProtocolServer):
    """The server core, plus: a `reload_model` frame is answered by the backend's `reload_reply`,
    which reads the frame's arguments (the envelope keeps only the common members)."""

    def admit_frame(self, peer: Peer, frame: str | bytes) -> tuple[messages.Message, int] | dict[str, Any]:
        admitted = super().admit_frame(peer, frame)
        if isinstance(admitted, dict) and admitted.get("type") == RELOAD_FRAME:
            return self.handler.reload_reply(peer, frame, admitted.get("request_id"))
        return admitted


class _SwapGate:
    """Batches run while no swap does; a swap waits for running batches and holds new ones back."""

    def __init__(self) -> None:
        # Readers take the plain lock under the condition (Condition's own __enter__ is Python code,
        # and every request passes here); waiting still goes through the condition.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0
        self._reading = _Reading(self)

    def reading(self) -> _Reading:
        # Every request passes here: a plain context manager object, not a generator (@contextmanager
        # cost a fifth of a request's protocol work in the backend, measured in-process).
        return self._reading

    @contextlib.contextmanager
    def writing(self):
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class _Reading:
    """`_SwapGate.reading()`: enter when no swap runs or waits; on exit, wake a waiting swap when
    the last batch leaves (readers waiting for a swap are woken by the swap's own exit)."""

    __slots__ = ("_gate",)

    def __init__(self, gate: _SwapGate) -> None:
        self._gate = gate

    def __enter__(self) -> None:
        gate = self._gate
        with gate._lock:
            while gate._writer or gate._writers_waiting:
                gate._cond.wait()
            gate._readers += 1

    def __exit__(self, *exc_info: object) -> None:
        gate = self._gate
        with gate._lock:
            gate._readers -= 1
            if not gate._readers and gate._writers_waiting:
                gate._cond.notify_all()


def _parent(path: str) -> str:
    import os.path

    return os.path.dirname(os.path.abspath(path.rstrip("/")))
