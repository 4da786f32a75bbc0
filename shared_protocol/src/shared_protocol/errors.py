"""Error codes carried in `error` replies, and the exceptions that produce them."""

from __future__ import annotations

import enum


class ErrorCode(enum.StrEnum):
    """Machine-readable `code` of an `error` reply (the seed only had the `error` text)."""

    BAD_REQUEST = "bad_request"  # the request itself is wrong; retrying it will not help
    TIMEOUT = "timeout"  # the deadline passed before a result was ready
    OVERLOADED = "overloaded"  # too much queued work; retry later
    UNAVAILABLE = "unavailable"  # backend not connected, still loading, disabled or draining
    INTERNAL = "internal"  # the model or the server failed on a valid request


class ProtocolError(Exception):
    """An error that becomes an `error` reply with `code` and a human-readable message."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str, *, code: ErrorCode | None = None, request_id: str | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code
        self.request_id = request_id

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code.value


class BadRequestError(ProtocolError):
    """Raise from `process_inference` when the input is invalid; the reply names the problem."""

    code = ErrorCode.BAD_REQUEST
