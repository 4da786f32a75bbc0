"""The fatigue service's sessions in the shared session store (shared_protocol.sessions).

The store bounds sessions by count, per-owner quota and idle time (server clock) and keys them by
(owner, session_id), so one client can neither evict, reset nor write another client's session.
On top of it `lock` is held for a whole frame update: a session's frames are then applied one at
a time and in the order the worker takes them (arrival order with one worker).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from shared_protocol.sessions import SessionKey, SessionStore

from .session import SessionTracker
from .settings import FatigueSettings


class FatigueSessions:
    def __init__(self, settings: FatigueSettings, clock: Callable[[], float] = time.monotonic):
        self._settings = settings
        self._store: SessionStore[SessionTracker] = SessionStore(
            max_sessions=settings.max_sessions,
            max_sessions_per_owner=settings.max_sessions_per_owner,
            idle_ttl_s=settings.session_idle_ttl_s,
            clock=clock,
        )
        self.lock = threading.Lock()

    def get(self, key: SessionKey) -> SessionTracker:
        """The session, created if new (a full store raises `overloaded`). Call with `lock` held."""
        return self._store.get_or_create(key, lambda: SessionTracker(key[1], self._settings))

    def reset(self, key: SessionKey) -> bool:
        """Forget a session; True if it existed. Call with `lock` held."""
        return self._store.reset(key)

    def __len__(self) -> int:
        return len(self._store)

    def __contains__(self, key: SessionKey) -> bool:
        return key in self._store
