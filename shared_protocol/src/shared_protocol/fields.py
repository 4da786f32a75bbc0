"""The request fields every model backend shares, validated by one rule for all of them.

`session_id`, `timestamp` and `reset_session` mean the same thing in every service, so they are
checked here once (three services used to disagree, e.g. on `session_id: null`). The image field
has its own decoder in `shared_protocol.images`.

Sessions belong to an *owner*: the gateway names the client connection (or authenticated client)
that sent a request, and the backend keys session state by (owner, session_id), so one client can
never read, reset, evict or write another client's session. The base class hands the owner to the
model code on the request's `data` (a `RequestData`, a dict with an `owner` attribute).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import BadRequestError

DEFAULT_SESSION_ID = "default"
MAX_SESSION_ID_LENGTH = 128
# Seconds; a timestamp this far from zero is no clock anyone streams from (and loses sub-ms precision).
MAX_ABS_TIMESTAMP = 1e11
# The owner of requests that did not come through a server (in-process calls, tests).
LOCAL_OWNER = "local"


class RequestData(dict):
    """A request's `data` plus what the server knows about it (never set by the client): the owner
    of its sessions, and when it arrived (time.monotonic(), for services that time frames that came
    without a timestamp)."""

    __slots__ = ("owner", "received_at")

    def __init__(self, data: Mapping[str, Any], owner: str = LOCAL_OWNER, received_at: float | None = None) -> None:
        super().__init__(data)
        self.owner = owner
        self.received_at = received_at


def owner_of(data: Mapping[str, Any]) -> str:
    return getattr(data, "owner", LOCAL_OWNER)


@dataclass(frozen=True, slots=True)
class CommonFields:
    owner: str
    session_id: str
    timestamp: float | None  # None when the client sent none
    reset_session: bool
    received_at: float | None = None  # server's monotonic clock at arrival, when a server received it

    @property
    def session_key(self) -> tuple[str, str]:
        return (self.owner, self.session_id)


def common_fields(data: Mapping[str, Any]) -> CommonFields:
    """Validate the shared fields of a request's `data`; BadRequestError names the field at fault."""
    if not isinstance(data, Mapping):
        raise BadRequestError(f"'data' must be an object, got {type(data).__name__}")
    return CommonFields(
        owner=owner_of(data),
        session_id=session_id_field(data.get("session_id")),
        timestamp=timestamp_field(data.get("timestamp")),
        reset_session=reset_session_field(data.get("reset_session")),
        received_at=getattr(data, "received_at", None),
    )


def session_id_field(value: Any) -> str:
    """Absent or null means the default session; otherwise 1-128 printable characters."""
    if value is None:
        return DEFAULT_SESSION_ID
    if not isinstance(value, str):
        raise BadRequestError(f"field 'session_id' must be a string, got {type(value).__name__}")
    if not value:
        raise BadRequestError("field 'session_id' must not be empty")
    if len(value) > MAX_SESSION_ID_LENGTH:
        raise BadRequestError(f"field 'session_id' is longer than {MAX_SESSION_ID_LENGTH} characters")
    if not value.isprintable():
        raise BadRequestError("field 'session_id' contains control or non-printable characters")
    return value


def timestamp_field(value: Any) -> float | None:
    """Seconds on the client's clock, or None when absent."""
    if value is None:
        return None
    # bool is an int in Python, but `true` is no time.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequestError(f"field 'timestamp' must be a number of seconds, got {type(value).__name__}")
    if not math.isfinite(value) or abs(value) > MAX_ABS_TIMESTAMP:
        raise BadRequestError(f"field 'timestamp' must be a finite number of seconds within ±{MAX_ABS_TIMESTAMP:g}")
    return float(value)


def reset_session_field(value: Any) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise BadRequestError(f"field 'reset_session' must be true or false, got {type(value).__name__}")
    return value
