"""One bounded store of per-session state for every model backend.

Sessions are keyed by (owner, session_id) (see `fields`), and bounded three ways:
- idle sessions expire after `idle_ttl_s` (server clock, not client timestamps);
- an owner holds at most `max_sessions_per_owner`: a new session beyond that evicts the owner's own
  least recently used one, never another owner's;
- the store holds at most `max_sessions`: when full (after expiring idle ones) a new session is
  refused with `overloaded` rather than evicting a session that belongs to someone else.
Thread-safe: model code runs on worker threads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from .errors import ErrorCode, ProtocolError

logger = logging.getLogger(__name__)

T = TypeVar("T")
SessionKey = tuple[str, str]  # (owner, session_id)

DEFAULT_MAX_SESSIONS = 1024
DEFAULT_MAX_SESSIONS_PER_OWNER = 16
DEFAULT_SESSION_IDLE_TTL_S = 600.0


class SessionStoreFull(ProtocolError):
    code = ErrorCode.OVERLOADED


class SessionStore(Generic[T]):
    def __init__(
        self,
        *,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        max_sessions_per_owner: int = DEFAULT_MAX_SESSIONS_PER_OWNER,
        idle_ttl_s: float = DEFAULT_SESSION_IDLE_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_sessions < 1 or max_sessions_per_owner < 1:
            raise ValueError("max_sessions and max_sessions_per_owner must be >= 1")
        if idle_ttl_s <= 0:
            raise ValueError("idle_ttl_s must be > 0")
        self.max_sessions = max_sessions
        self.max_sessions_per_owner = max_sessions_per_owner
        self.idle_ttl_s = idle_ttl_s
        self._clock = clock
        # Least recently used first, across owners (idle expiry walks it from the front) ...
        self._entries: OrderedDict[SessionKey, tuple[T, float]] = OrderedDict()
        # ... and per owner, least recently used first (quota eviction stays inside the owner).
        self._by_owner: dict[str, OrderedDict[str, None]] = {}
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: SessionKey) -> bool:
        return key in self._entries

    def owners(self) -> int:
        return len(self._by_owner)

    def get(self, key: SessionKey) -> T | None:
        """The session if it exists (marked used now), else None."""
        with self._lock:
            now = self._clock()
            self._expire_idle(now)
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._touch(key, entry[0], now)
            return entry[0]

    def get_or_create(self, key: SessionKey, factory: Callable[[], T]) -> T:
        with self._lock:
            existing = self.get(key)
            if existing is not None:
                return existing
            return self._insert(key, factory())

    def replace(self, key: SessionKey, value: T) -> T:
        """Store `value` as the session's state (a reset with new parameters)."""
        with self._lock:
            self._expire_idle(self._clock())
            if key in self._entries:
                self._touch(key, value, self._clock())
                return value
            return self._insert(key, value)

    def reset(self, key: SessionKey) -> bool:
        """Forget a session; True if it existed."""
        with self._lock:
            return self._remove(key)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._by_owner.clear()

    # ---- internals (lock held) ---------------------------------------------------------------

    def _insert(self, key: SessionKey, value: T) -> T:
        owner, session_id = key
        owned = self._by_owner.get(owner)
        if owned is not None and len(owned) >= self.max_sessions_per_owner:
            oldest = next(iter(owned))
            self._remove((owner, oldest))
            logger.info("session dropped: owner over its quota of %d sessions", self.max_sessions_per_owner)
        if len(self._entries) >= self.max_sessions:
            raise SessionStoreFull(
                f"session store is full ({self.max_sessions} sessions); retry later or reuse a session_id"
            )
        self._touch(key, value, self._clock())
        return value

    def _touch(self, key: SessionKey, value: T, now: float) -> None:
        owner, session_id = key
        self._entries[key] = (value, now)
        self._entries.move_to_end(key)
        owned = self._by_owner.setdefault(owner, OrderedDict())
        owned[session_id] = None
        owned.move_to_end(session_id)

    def _remove(self, key: SessionKey) -> bool:
        if self._entries.pop(key, None) is None:
            return False
        owner, session_id = key
        owned = self._by_owner.get(owner)
        if owned is not None:
            owned.pop(session_id, None)
            if not owned:
                del self._by_owner[owner]
        return True

    def _expire_idle(self, now: float) -> None:
        while self._entries:
            key, (_, last_used) = next(iter(self._entries.items()))
            if now - last_used <= self.idle_ttl_s:
                break
            self._remove(key)
            logger.info("session dropped after %.0f s idle", now - last_used)
