"""Graceful stop of a websockets server: stop accepting, let in-flight work finish, then close."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from websockets import CloseCode

logger = logging.getLogger(__name__)


async def drain_and_close(
    server, idle: asyncio.Event, grace_period: float, on_grace_expired: Callable[[], None] | None = None
) -> bool:
    """Returns True when all in-flight work finished within `grace_period`.

    `Server.close()` is idempotent, so it is called once with close_connections=False (new TCP
    connections refused, open ones kept so their replies can still be sent); the connections that
    remain after the drain are closed one by one with 1001 (going away).
    """
    server.close(close_connections=False)
    drained = True
    try:
        await asyncio.wait_for(idle.wait(), timeout=grace_period)
    except TimeoutError:
        drained = False
        logger.warning("grace period of %.1fs over with work still in flight", grace_period)
        if on_grace_expired is not None:
            on_grace_expired()
    open_connections = list(server.connections)
    if open_connections:
        await asyncio.gather(
            *(conn.close(CloseCode.GOING_AWAY, "server shutting down") for conn in open_connections),
            return_exceptions=True,
        )
    await server.wait_closed()
    return drained
