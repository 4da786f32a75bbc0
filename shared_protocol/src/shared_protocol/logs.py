"""Logging for every vigil service: text for a terminal, JSON lines for a log collector.

Request-level lines carry `request_id` (the id on this hop), `client_request_id` (the client's own
id, at the gateway), `trace_id` (minted at the gateway or taken from the client, sent to the
backend and logged on both sides), `session` (a digest of the owner and session id: sessions can be
followed without logging client-chosen names), `code` and `duration_ms`. Pass them as `extra=`.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"  # the seed's format
REQUEST_FIELDS = ("request_id", "client_request_id", "trace_id", "session", "code", "duration_ms", "model")


class _ServiceName(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        return True


class _TextWithIds(logging.Formatter):
    """The seed's text format, with the request fields appended when a line has them."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ids = " ".join(
            f"{key}={getattr(record, key)}" for key in REQUEST_FIELDS if getattr(record, key, None) is not None
        )
        return f"{text} [{ids}]" if ids else text


def configure_logging(level: str | None = "INFO", fmt: str = "text", service: str | None = None) -> None:
    """Configure the root logger once per process (replaces handlers set before)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(service)s %(message)s",
                rename_fields={"levelname": "level", "asctime": "time", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(_TextWithIds(TEXT_FORMAT))
    handler.addFilter(_ServiceName(service or "vigil"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, (level or "INFO").upper(), logging.INFO))
    # websockets logs every HTTP probe (/readyz every few seconds) at INFO; keep it to warnings
    # unless debugging.
    logging.getLogger("websockets").setLevel(logging.DEBUG if root.level <= logging.DEBUG else logging.WARNING)


def session_digest(owner: str, session_id: str | None) -> str | None:
    """A short stable digest of a session, for logs (the names are the client's, not ours to log)."""
    if session_id is None:
        return None
    return hashlib.sha256(f"{owner}\x00{session_id}".encode("utf-8", "replace")).hexdigest()[:12]


def request_fields(**fields: Any) -> dict[str, Any]:
    """`extra=` for a request-level log line (None values dropped)."""
    return {key: value for key, value in fields.items() if value is not None}
