"""Bounded session store: least recently used sessions beyond `max_sessions` and sessions idle for
longer than `session_idle_ttl_s` (wall clock, not client timestamps) are dropped."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from .session import SessionTracker
from .settings import FatigueSettings

logger = logging.getLogger(__name__)


class SessionStore:
    def __init__(self, settings: FatigueSettings, clock: Callable[[], float] = time.monotonic):
        self._settings = settings
        self._clock = clock
        self._sessions: OrderedDict[str, tuple[SessionTracker, float]] = OrderedDict()
        # Held for the whole frame update: sessions are small and frames arrive in order.
        self.lock = threading.Lock()

    def get(self, session_id: str) -> SessionTracker:
        """The session, created if new; marks it used now. Call with `lock` held."""
        now = self._clock()
        self._evict_idle(now)
        entry = self._sessions.pop(session_id, None)
        tracker = entry[0] if entry else SessionTracker(session_id, self._settings)
        self._sessions[session_id] = (tracker, now)
        while len(self._sessions) > self._settings.max_sessions:
            dropped, _ = self._sessions.popitem(last=False)
            logger.info("session %r dropped: more than %d sessions", dropped, self._settings.max_sessions)
        return tracker

    def reset(self, session_id: str) -> bool:
        """Forget a session; True if it existed. Call with `lock` held."""
        return self._sessions.pop(session_id, None) is not None

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, session_id: str) -> bool:
        return session_id in self._sessions

    def _evict_idle(self, now: float) -> None:
        ttl = self._settings.session_idle_ttl_s
        # Oldest use first: stop at the first session still fresh.
        while self._sessions:
            session_id, (_, last_used) = next(iter(self._sessions.items()))
            if now - last_used <= ttl:
                break
            del self._sessions[session_id]
            logger.info("session %r dropped after %.0f s idle", session_id, now - last_used)
