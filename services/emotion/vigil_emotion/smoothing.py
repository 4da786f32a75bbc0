"""Per-session temporal smoothing of the primary face's class probabilities (EMA over frames).

A frame without a face leaves the average as it is (the last stable emotion stays visible).
The average restarts when the client asks (`reset_session`), when `timestamp` goes backwards or
jumps by more than `max_gap_s`. The states live in the shared `SessionStore`, keyed by
(owner, session_id): one client can neither read, reset, evict nor write another's average; idle
sessions expire, an owner over its quota loses its own least recently used session, and a full
store refuses new sessions with `overloaded`. Every update holds one lock: requests may be processed
on several worker threads, and an EMA step must not interleave with another on the same session.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from shared_protocol.sessions import SessionKey, SessionStore


@dataclass(slots=True)
class _SessionState:
    probabilities: np.ndarray | None = None  # EMA; None until the first face
    frames: int = 0  # face frames folded into the current average
    last_timestamp: float | None = None


@dataclass(frozen=True, slots=True)
class SmoothedResult:
    probabilities: np.ndarray
    frames: int
    restarted: bool  # this frame started a new average


class SessionSmoother:
    def __init__(
        self,
        alpha: float,
        *,
        max_gap_s: float,
        max_sessions: int,
        max_sessions_per_owner: int,
        idle_ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        if not 0.0 < alpha <= 1.0:
            raise ValueError("alpha must be in (0, 1]")
        self.alpha = alpha
        self.max_gap_s = max_gap_s
        self.sessions: SessionStore[_SessionState] = SessionStore(
            max_sessions=max_sessions,
            max_sessions_per_owner=max_sessions_per_owner,
            idle_ttl_s=idle_ttl_s,
            clock=clock,
        )
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.sessions)

    def __contains__(self, key: SessionKey) -> bool:
        return key in self.sessions

    def clear(self) -> None:
        self.sessions.clear()

    def update(
        self,
        key: SessionKey,
        probabilities: np.ndarray | None,
        timestamp: float | None = None,
        reset: bool = False,
    ) -> SmoothedResult | None:
        """Fold in this frame's primary-face probabilities (None: no face) and return the average.

        Raises the store's `overloaded` error when `key` is a new session and the store is full."""
        with self._lock:
            if reset:
                state = self.sessions.replace(key, _SessionState())
            else:
                state = self.sessions.get_or_create(key, _SessionState)
            restarted = False
            if timestamp is not None:
                last = state.last_timestamp
                if last is not None and (timestamp < last or timestamp - last > self.max_gap_s):
                    state.probabilities, state.frames = None, 0
                state.last_timestamp = timestamp
            if probabilities is not None:
                p = np.asarray(probabilities, dtype=np.float64)
                if state.probabilities is None or state.probabilities.shape != p.shape:
                    state.probabilities, state.frames, restarted = p.copy(), 0, True
                else:
                    state.probabilities = self.alpha * p + (1.0 - self.alpha) * state.probabilities
                state.frames += 1
            if state.probabilities is None:
                return None
            return SmoothedResult(state.probabilities.copy(), state.frames, restarted)
