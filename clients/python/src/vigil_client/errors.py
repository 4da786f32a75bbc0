"""Typed errors, one per protocol error `code` (README "Protocol"), so callers can `except Overloaded`."""

from __future__ import annotations


class VigilError(Exception):
    """An `error` reply (or a local failure mapped onto the same codes)."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None, request_id: str | None = None, reply=None):
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.request_id = request_id
        self.reply = reply

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class BadRequest(VigilError):
    code = "bad_request"


class Timeout(VigilError):
    code = "timeout"


class Overloaded(VigilError):
    code = "overloaded"


class Unavailable(VigilError):
    """The server or a backend cannot be reached; also raised locally when the connection drops."""

    code = "unavailable"


class Internal(VigilError):
    code = "internal"


class Unauthorized(VigilError):
    """The server refused the WebSocket handshake with 401 (missing or wrong token)."""

    code = "unauthorized"


class ProtocolViolation(VigilError):
    """The server sent something this client cannot read."""

    code = "protocol"


ERRORS_BY_CODE: dict[str, type[VigilError]] = {
    cls.code: cls for cls in (BadRequest, Timeout, Overloaded, Unavailable, Internal, Unauthorized)
}


def error_from_reply(reply: dict) -> VigilError:
    code = reply.get("code") if isinstance(reply.get("code"), str) else "internal"
    cls = ERRORS_BY_CODE.get(code, VigilError)
    return cls(str(reply.get("error", "")), code=code, request_id=reply.get("request_id"), reply=reply)
