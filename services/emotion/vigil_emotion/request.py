"""Validation of an inference request's `data`: every bad field becomes a BadRequestError naming it.

`session_id`, `timestamp` and `reset_session` follow the rule every backend shares
(`shared_protocol.fields`); the owner of the session comes with `data` from the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from shared_protocol.errors import BadRequestError
from shared_protocol.fields import common_fields
from shared_protocol.images import decode_image_b64
from shared_protocol.sessions import SessionKey

from .settings import EmotionSettings


@dataclass(frozen=True, slots=True)
class EmotionRequest:
    image: np.ndarray  # BGR uint8
    owner: str  # the client connection the session belongs to (never sent by the client)
    session_id: str  # the client's own name for the session, echoed in the reply
    timestamp: float | None
    reset_session: bool

    @property
    def session_key(self) -> SessionKey:
        return (self.owner, self.session_id)


def parse_request(data: Any, settings: EmotionSettings) -> EmotionRequest:
    if not isinstance(data, dict):
        raise BadRequestError(f"'data' must be an object, got {type(data).__name__}")
    fields = common_fields(data)
    image = decode_image_b64(
        data.get("image"), field="image", max_bytes=settings.max_image_bytes, max_side=settings.max_image_side
    )
    return EmotionRequest(
        image=image,
        owner=fields.owner,
        session_id=fields.session_id,
        timestamp=fields.timestamp,
        reset_session=fields.reset_session,
    )
