"""Command-line plumbing shared by every service's main.py: flags, logging, run until signalled."""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

from . import logs
from .auth import parse_tokens
from .backend import BaseModelBackend, ModelInitializationError
from .limits import (
    DEFAULT_GRACE_PERIOD,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_IN_FLIGHT_PER_CONNECTION,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_PENDING_BYTES,
    DEFAULT_MAX_PENDING_BYTES_PER_CONNECTION,
    DEFAULT_MAX_QUEUE,
    DEFAULT_REQUEST_TIMEOUT,
)
from .server import ServerLimits


def configure_logging(level: str | None = None, fmt: str | None = None, service: str | None = None) -> None:
    """Logging for a service: `level` (default VIGIL_LOG_LEVEL or INFO), `fmt` text|json (default
    VIGIL_LOG_FORMAT or text)."""
    logs.configure_logging(
        level or os.environ.get("VIGIL_LOG_LEVEL") or "INFO",
        fmt or os.environ.get("VIGIL_LOG_FORMAT") or "text",
        service,
    )


def _env(name: str, default: Any) -> Any:
    return os.environ.get(name, default)


def _optional_int(text: str) -> int | None:
    return None if text in ("", "auto") else int(text)


def build_arg_parser(description: str, default_port: int, env_prefix: str = "VIGIL") -> argparse.ArgumentParser:
    """Flags every backend takes; each defaults from an env var so containers can set them.

    Defaults are given as text and converted by argparse, so a bad env value (VIGIL_MAX_QUEUE=abc)
    exits with code 2 and a message naming the flag, like a bad flag does.
    """
    p = argparse.ArgumentParser(description=description)
    e = env_prefix

    def flag(name: str, env: str, default: Any, kind: Any, help_text: str) -> None:
        p.add_argument(name, type=kind, default=str(_env(f"{e}_{env}", default)), help=f"{help_text} (env {e}_{env})")

    p.add_argument("--host", default=_env(f"{e}_HOST", "localhost"), help="address to bind")
    flag("--port", "PORT", default_port, int, "port to bind")
    p.add_argument("--log-level", default=_env("VIGIL_LOG_LEVEL", "INFO"))
    flag("--max-concurrency", "MAX_CONCURRENCY", DEFAULT_MAX_CONCURRENCY, int, "model calls running at once")
    flag("--max-queue", "MAX_QUEUE", DEFAULT_MAX_QUEUE, int, "requests waiting before 'overloaded'")
    flag("--request-timeout", "REQUEST_TIMEOUT", DEFAULT_REQUEST_TIMEOUT, float, "seconds before 'timeout'")
    flag(
        "--max-message-size", "MAX_MESSAGE_SIZE", DEFAULT_MAX_MESSAGE_SIZE, int, "bytes; larger frames close with 1009"
    )
    flag("--grace-period", "GRACE_PERIOD", DEFAULT_GRACE_PERIOD, float, "seconds to finish in-flight work on SIGTERM")
    p.add_argument(
        "--exit-on-init-failure",
        action="store_true",
        default=_env(f"{e}_STRICT", "false").lower() in ("1", "true", "yes"),
        help="exit non-zero when the model cannot be loaded (default: stay up, report unhealthy)",
    )
    flag("--max-batch-size", "MAX_BATCH_SIZE", 1, int, "requests per model call (dynamic batching when > 1)")
    flag("--max-queue-delay-ms", "MAX_QUEUE_DELAY_MS", 0, float, "how long a request may wait to share a batch")
    flag("--threads", "THREADS", "auto", _optional_int, "threads for torch/BLAS/OpenCV; auto: from the CPU quota")
    flag("--max-connections", "MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS, int, "open connections; more get HTTP 503")
    flag(
        "--max-in-flight-per-connection",
        "MAX_IN_FLIGHT_PER_CONNECTION",
        DEFAULT_MAX_IN_FLIGHT_PER_CONNECTION,
        int,
        "unanswered requests per connection",
    )
    flag(
        "--max-pending-bytes",
        "MAX_PENDING_BYTES",
        DEFAULT_MAX_PENDING_BYTES,
        int,
        "bytes of unanswered requests in this process",
    )
    flag(
        "--max-pending-bytes-per-connection",
        "MAX_PENDING_BYTES_PER_CONNECTION",
        DEFAULT_MAX_PENDING_BYTES_PER_CONNECTION,
        int,
        "bytes of unanswered requests per connection",
    )
    return p


def common_backend_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    limits = ServerLimits(
        max_connections=args.max_connections,
        max_in_flight_per_connection=args.max_in_flight_per_connection,
        max_pending_bytes=args.max_pending_bytes,
        max_pending_bytes_per_connection=args.max_pending_bytes_per_connection,
    )
    return {
        "max_concurrency": args.max_concurrency,
        "max_queue": args.max_queue,
        "request_timeout": args.request_timeout,
        "max_message_size": args.max_message_size,
        "grace_period": args.grace_period,
        "exit_on_init_failure": args.exit_on_init_failure,
        "max_batch_size": args.max_batch_size,
        "max_queue_delay_ms": args.max_queue_delay_ms,
        "threads": args.threads,
        # A secret: from the environment only (a flag would show in `ps`).
        "api_tokens": parse_tokens(os.environ.get("VIGIL_API_TOKENS")),
        "server_limits": limits,
    }


def run_backend(backend: BaseModelBackend) -> int:
    """Serve until SIGTERM/SIGINT; returns the process exit code (or exits hard, see below)."""
    code = 0
    try:
        backend.start()
    except ModelInitializationError as exc:
        logging.getLogger(__name__).error("model failed to initialize: %s", exc)
        code = 1
    except KeyboardInterrupt:
        pass
    if backend.stuck_worker:
        # A model call that never returns must not hold the container past its stop grace period.
        logging.shutdown()
        os._exit(code or 3)
    return code
