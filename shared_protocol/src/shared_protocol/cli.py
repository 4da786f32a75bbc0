"""Command-line plumbing shared by every service's main.py: flags, logging, run until signalled."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from .backend import BaseModelBackend, ModelInitializationError
from .limits import (
    DEFAULT_GRACE_PERIOD,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_QUEUE,
    DEFAULT_REQUEST_TIMEOUT,
)

LOG_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"  # the seed's format


def configure_logging(level: str | None = None) -> None:
    level_name = (level or os.environ.get("VIGIL_LOG_LEVEL") or "INFO").upper()
    logging.basicConfig(level=getattr(logging, level_name, logging.INFO), format=LOG_FORMAT, stream=sys.stderr)
    # websockets logs every HTTP probe (/readyz every few seconds) at INFO; keep it to warnings
    # unless debugging.
    root_level = logging.getLogger().level
    logging.getLogger("websockets").setLevel(logging.DEBUG if root_level <= logging.DEBUG else logging.WARNING)


def _env(name: str, default: Any) -> Any:
    return os.environ.get(name, default)


def build_arg_parser(description: str, default_port: int, env_prefix: str = "VIGIL") -> argparse.ArgumentParser:
    """Flags every backend takes; each defaults from an env var so containers can set them."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--host", default=_env(f"{env_prefix}_HOST", "localhost"), help="address to bind")
    p.add_argument("--port", type=int, default=int(_env(f"{env_prefix}_PORT", default_port)), help="port to bind")
    p.add_argument("--log-level", default=_env("VIGIL_LOG_LEVEL", "INFO"))
    p.add_argument(
        "--max-concurrency",
        type=int,
        default=int(_env(f"{env_prefix}_MAX_CONCURRENCY", DEFAULT_MAX_CONCURRENCY)),
        help="model calls running at once",
    )
    p.add_argument(
        "--max-queue",
        type=int,
        default=int(_env(f"{env_prefix}_MAX_QUEUE", DEFAULT_MAX_QUEUE)),
        help="requests waiting before 'overloaded'",
    )
    p.add_argument(
        "--request-timeout",
        type=float,
        default=float(_env(f"{env_prefix}_REQUEST_TIMEOUT", DEFAULT_REQUEST_TIMEOUT)),
        help="seconds before a request is answered 'timeout'",
    )
    p.add_argument(
        "--max-message-size",
        type=int,
        default=int(_env(f"{env_prefix}_MAX_MESSAGE_SIZE", DEFAULT_MAX_MESSAGE_SIZE)),
        help="bytes; larger frames close the connection with 1009",
    )
    p.add_argument(
        "--grace-period",
        type=float,
        default=float(_env(f"{env_prefix}_GRACE_PERIOD", DEFAULT_GRACE_PERIOD)),
        help="seconds to finish in-flight work on SIGTERM",
    )
    p.add_argument(
        "--exit-on-init-failure",
        action="store_true",
        default=_env(f"{env_prefix}_STRICT", "false").lower() in ("1", "true", "yes"),
        help="exit non-zero when the model cannot be loaded (default: stay up, report unhealthy)",
    )
    p.add_argument(
        "--max-batch-size",
        type=int,
        default=int(_env(f"{env_prefix}_MAX_BATCH_SIZE", 1)),
        help="requests per model call (dynamic batching when > 1)",
    )
    p.add_argument(
        "--max-queue-delay-ms",
        type=float,
        default=float(_env(f"{env_prefix}_MAX_QUEUE_DELAY_MS", 0)),
        help="how long a request may wait for others to share its batch",
    )
    return p


def common_backend_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "max_concurrency": args.max_concurrency,
        "max_queue": args.max_queue,
        "request_timeout": args.request_timeout,
        "max_message_size": args.max_message_size,
        "grace_period": args.grace_period,
        "exit_on_init_failure": args.exit_on_init_failure,
        "max_batch_size": args.max_batch_size,
        "max_queue_delay_ms": args.max_queue_delay_ms,
    }


def run_backend(backend: BaseModelBackend) -> int:
    """Serve until SIGTERM/SIGINT; returns the process exit code."""
    try:
        backend.start()
    except ModelInitializationError as exc:
        logging.getLogger(__name__).error("model failed to initialize: %s", exc)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
