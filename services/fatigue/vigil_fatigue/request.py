"""Validation of a request's `data` into typed fields; every problem names its field."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from shared_protocol.errors import BadRequestError
from shared_protocol.images import decode_image_b64

from .settings import FatigueSettings

DEFAULT_SESSION_ID = "default"
MAX_SESSION_ID_LENGTH = 128


@dataclass(frozen=True)
class FatigueRequest:
    session_id: str
    reset_session: bool
    timestamp: float | None  # None only for a reset without an image
    frame: np.ndarray | None  # BGR; None only for a reset without an image


def parse_request(data: object, settings: FatigueSettings) -> FatigueRequest:
    if not isinstance(data, dict):
        raise BadRequestError(f"'data' must be an object, got {type(data).__name__}")
    session_id = _session_id(data.get("session_id", DEFAULT_SESSION_ID))
    reset = data.get("reset_session", False)
    if not isinstance(reset, bool):
        raise BadRequestError(f"field 'reset_session' must be true or false, got {type(reset).__name__}")
    if reset and data.get("image") is None:
        return FatigueRequest(session_id, True, None, None)  # reset only: nothing to analyse
    timestamp = _timestamp(data.get("timestamp"))
    frame = decode_image_b64(
        data.get("image"), field="image", max_bytes=settings.max_image_bytes, max_side=settings.max_image_side
    )
    return FatigueRequest(session_id, reset, timestamp, frame)


def _session_id(value: object) -> str:
    if not isinstance(value, str):
        raise BadRequestError(f"field 'session_id' must be a string, got {type(value).__name__}")
    if not value or len(value) > MAX_SESSION_ID_LENGTH:
        raise BadRequestError(f"field 'session_id' must have 1 to {MAX_SESSION_ID_LENGTH} characters")
    return value


def _timestamp(value: object) -> float:
    if value is None:
        raise BadRequestError("missing field 'timestamp' (seconds, a number)")
    # bool is an int in Python, but `true` is no time.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequestError(f"field 'timestamp' must be a number of seconds, got {type(value).__name__}")
    if not math.isfinite(value):
        raise BadRequestError("field 'timestamp' must be finite")
    return float(value)
