"""Validation of an inference request's `data`: every bad field becomes a BadRequestError naming it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared_protocol.errors import BadRequestError
from shared_protocol.images import decode_image_b64

from .settings import EmotionSettings

DEFAULT_SESSION_ID = "default"


@dataclass(frozen=True, slots=True)
class EmotionRequest:
    image: np.ndarray  # BGR uint8
    session_id: str
    timestamp: float | None
    reset_session: bool


def parse_request(data: Any, settings: EmotionSettings) -> EmotionRequest:
    if not isinstance(data, dict):
        raise BadRequestError(f"'data' must be an object, got {type(data).__name__}")
    session_id = _session_id(data.get("session_id", DEFAULT_SESSION_ID), settings.max_session_id_length)
    timestamp = _timestamp(data.get("timestamp"))
    reset = data.get("reset_session", False)
    if not isinstance(reset, bool):
        raise BadRequestError(f"field 'reset_session' must be true or false, got {type(reset).__name__}")
    image = decode_image_b64(
        data.get("image"), field="image", max_bytes=settings.max_image_bytes, max_side=settings.max_image_side
    )
    return EmotionRequest(image=image, session_id=session_id, timestamp=timestamp, reset_session=reset)


def _session_id(value: Any, max_length: int) -> str:
    if value is None:
        return DEFAULT_SESSION_ID
    if not isinstance(value, str):
        raise BadRequestError(f"field 'session_id' must be a string, got {type(value).__name__}")
    if not value:
        raise BadRequestError("field 'session_id' must not be empty")
    if len(value) > max_length:
        raise BadRequestError(f"field 'session_id' is longer than {max_length} characters")
    if not value.isprintable():
        raise BadRequestError("field 'session_id' contains control characters")
    return value


def _timestamp(value: Any) -> float | None:
    if value is None:
        return None
    # bool is an int subclass; True is not a time.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequestError(f"field 'timestamp' must be a number of seconds, got {type(value).__name__}")
    if not math.isfinite(value):
        raise BadRequestError("field 'timestamp' must be finite")
    return float(value)
