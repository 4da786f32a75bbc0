"""Server-side plumbing shared by BaseModelBackend and the main backend: read a connection's
frames, and send one reply that is always delivered as valid JSON if the peer is still there."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import websockets
from websockets.asyncio.server import ServerConnection

from . import messages
from .errors import ErrorCode

logger = logging.getLogger(__name__)

FrameHandler = Callable[[ServerConnection, str | bytes, set[asyncio.Task]], Awaitable[None]]


async def read_frames(connection: ServerConnection, handle_frame: FrameHandler) -> None:
    """Feed every frame to `handle_frame`, which may start tasks (pipelined requests) in `tasks`.

    When the peer goes, the tasks still run to the end: their replies cannot be delivered, but
    work stays bounded and slots and counters stay right.
    """
    tasks: set[asyncio.Task] = set()
    try:
        async for frame in connection:
            await handle_frame(connection, frame, tasks)
    except websockets.ConnectionClosed:
        pass
    finally:
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


async def send_message(connection: ServerConnection, message: dict[str, Any]) -> None:
    try:
        text = messages.encode(message)
    except (TypeError, ValueError) as exc:
        # A result JSON cannot carry (numpy types, NaN): still exactly one reply, as an error.
        logger.error("reply %s is not JSON-serialisable: %s", message.get("request_id"), exc)
        text = messages.encode(
            messages.error_message(
                message.get("request_id"), ErrorCode.INTERNAL, f"result is not JSON-serialisable: {exc}"
            )
        )
    try:
        await connection.send(text)
    except websockets.ConnectionClosed:
        logger.debug("peer gone before reply %s could be sent", message.get("request_id"))
