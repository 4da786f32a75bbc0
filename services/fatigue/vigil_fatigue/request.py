"""Validation of a request's `data` into typed fields; every problem names its field.

The fields every backend shares (session_id, timestamp, reset_session and the session's owner)
follow shared_protocol.fields; the image goes through shared_protocol.images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared_protocol.fields import LOCAL_OWNER, common_fields
from shared_protocol.images import decode_image_b64
from shared_protocol.sessions import SessionKey

from .settings import FatigueSettings


@dataclass(frozen=True)
class FatigueRequest:
    session_id: str
    reset_session: bool
    timestamp: float | None  # client seconds; None when the client sent none (server time is used)
    frame: np.ndarray | None  # BGR; None only for a reset without an image
    owner: str = LOCAL_OWNER  # whose session (set by the server from the connection)
    received_at: float | None = None  # server's monotonic clock when the request arrived

    @property
    def session_key(self) -> SessionKey:
        return (self.owner, self.session_id)


def parse_request(data: object, settings: FatigueSettings) -> FatigueRequest:
    fields = common_fields(data)  # BadRequestError for a non-object `data` or a bad common field
    image = data.get("image")
    if fields.reset_session and image is None:
        return FatigueRequest(fields.session_id, True, fields.timestamp, None, fields.owner, fields.received_at)
    frame = decode_image_b64(image, field="image", max_bytes=settings.max_image_bytes, max_side=settings.max_image_side)
    return FatigueRequest(
        fields.session_id, fields.reset_session, fields.timestamp, frame, fields.owner, fields.received_at
    )
