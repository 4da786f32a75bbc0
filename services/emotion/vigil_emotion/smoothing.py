"""Per-session temporal smoothing of the primary face's class probabilities (EMA over frames).

A frame without a face leaves the average as it is (the last stable emotion stays visible).
The average restarts when the client asks (`reset_session`), when `timestamp` goes backwards or
jumps by more than `max_gap_s`. Sessions idle longer than `idle_ttl_s` or beyond `max_sessions`
(least recently used first) are dropped. All state sits behind one lock: requests may be
processed on several worker threads.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(slots=True)
class _SessionState:
    probabilities: np.ndarray | None = None  # EMA; None until the first face
    frames: int = 0  # face frames folded into the current average
    last_timestamp: float | None = None
    last_seen: float = 0.0  # monotonic clock, for idle expiry


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
        idle_ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        if not 0.0 < alpha <= 1.0:
            raise ValueError("alpha must be in (0, 1]")
        self.alpha = alpha
        self.max_gap_s = max_gap_s
        self.max_sessions = max_sessions
        self.idle_ttl_s = idle_ttl_s
        self._clock = clock
        self._sessions: OrderedDict[str, _SessionState] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def update(
        self,
        session_id: str,
        probabilities: np.ndarray | None,
        timestamp: float | None = None,
        reset: bool = False,
    ) -> SmoothedResult | None:
        """Fold in this frame's primary-face probabilities (None: no face) and return the average."""
        now = self._clock()
        with self._lock:
            self._expire(now)
            state = self._sessions.pop(session_id, None)
            if state is None or reset:
                state = _SessionState()
            self._sessions[session_id] = state  # most recently used last
            state.last_seen = now
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
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
            if state.probabilities is None:
                return None
            return SmoothedResult(state.probabilities.copy(), state.frames, restarted)

    def _expire(self, now: float) -> None:
        # Oldest first: stop at the first session still within its idle TTL.
        while self._sessions:
            session_id, state = next(iter(self._sessions.items()))
            if now - state.last_seen <= self.idle_ttl_s:
                break
            del self._sessions[session_id]
