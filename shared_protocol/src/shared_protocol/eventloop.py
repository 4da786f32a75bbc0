"""Run the server's event loop, on uvloop when it is installed (optional, faster socket I/O)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Coroutine
from typing import Any

logger = logging.getLogger(__name__)


def loop_factory():
    """uvloop's loop unless VIGIL_UVLOOP=0 or uvloop is not installed; None means asyncio's own."""
    if os.environ.get("VIGIL_UVLOOP", "1").lower() in ("0", "false", "no"):
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run_event_loop(main: Coroutine[Any, Any, Any]) -> Any:
    factory = loop_factory()
    logger.debug("event loop: %s", "uvloop" if factory else "asyncio")
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def stop_on_signals(stop: asyncio.Event) -> None:
    """SIGTERM / SIGINT set `stop` (graceful drain) instead of killing the process mid-request.

    Where the loop cannot take signal handlers (Windows), Ctrl-C raises KeyboardInterrupt as usual.
    """
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except NotImplementedError:
            logger.debug("no signal handlers on this platform; Ctrl-C interrupts directly")
