"""Per-session stream state (ring buffer, baseline) and a bounded, TTL-evicting session store."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from shared_protocol import BadRequestError

from .payload import EEGChunk
from .ring_buffer import RingBuffer
from .scoring import Baseline
from .settings import EEGSettings

logger = logging.getLogger(__name__)


class Session:
    def __init__(self, session_id: str, sfreq: float, ch_names: tuple[str, ...], settings: EEGSettings) -> None:
        self.session_id = session_id
        self.sfreq = sfreq
        self.ch_names = ch_names
        self.window_samples = max(1, round(settings.window_s * sfreq))
        self.min_samples = max(1, round(settings.min_window_s * sfreq))
        self.buffer = RingBuffer(len(ch_names), self.window_samples)
        self.baseline = Baseline(settings.baseline_windows)
        self.samples_received = 0
        self.next_timestamp: float | None = None  # expected timestamp of the next chunk
        self.lock = threading.Lock()  # held while a request reads or changes this session
        self.last_used = time.monotonic()
        self._max_gap = settings.max_timestamp_gap_s

    @property
    def stream_time_s(self) -> float:
        """Seconds of signal received so far (clock of the baseline spacing)."""
        return self.samples_received / self.sfreq

    def push(self, chunk: EEGChunk) -> list[str]:
        """Append a chunk; returns warnings (e.g. the buffer was cleared at a timestamp gap)."""
        warnings = []
        if chunk.timestamp is not None and self.next_timestamp is not None:
            gap = chunk.timestamp - self.next_timestamp
            if abs(gap) > self._max_gap:
                warnings.append(
                    f"timestamp {chunk.timestamp:.3f} is {gap:+.3f} s off the expected {self.next_timestamp:.3f}; "
                    "window buffer cleared"
                )
                self.buffer.clear()
        self.buffer.extend(chunk.samples_uv)
        n = chunk.samples_uv.shape[1]
        self.samples_received += n
        if chunk.timestamp is not None:
            self.next_timestamp = chunk.timestamp + n / self.sfreq
        return warnings


class SessionStore:
    def __init__(self, settings: EEGSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()  # least recently used first
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, session_id: str) -> bool:
        return session_id in self._sessions

    def clear(self) -> None:
        with self._lock:
            self._sessions.clear()

    def acquire(self, chunk: EEGChunk) -> tuple[Session, list[str]]:
        """The chunk's session (created, reset or refused as settings say) and any warnings."""
        warnings: list[str] = []
        now = self._clock()
        with self._lock:
            self._evict_idle(now)
            session = self._sessions.get(chunk.session_id)
            if session is not None and chunk.reset_session:
                session = None
                warnings.append("session reset on request")
            if session is not None and (session.sfreq != chunk.sfreq or session.ch_names != chunk.ch_names):
                change = _describe_change(session, chunk)
                if self._settings.on_stream_change == "error":
                    raise BadRequestError(
                        f"'data.eeg' {change} within session {chunk.session_id!r}; "
                        "send reset_session=true to start a new stream"
                    )
                warnings.append(f"{change}; session reset")
                logger.warning("session %s: %s; reset", chunk.session_id, change)
                session = None
            if session is None:
                session = Session(chunk.session_id, chunk.sfreq, chunk.ch_names, self._settings)
                self._sessions[chunk.session_id] = session
                while len(self._sessions) > self._settings.max_sessions:
                    evicted, _ = self._sessions.popitem(last=False)
                    logger.info("session %s evicted (more than %d sessions)", evicted, self._settings.max_sessions)
            self._sessions.move_to_end(chunk.session_id)
            session.last_used = now
        return session, warnings

    def _evict_idle(self, now: float) -> None:
        ttl = self._settings.session_ttl_s
        for session_id in [sid for sid, s in self._sessions.items() if now - s.last_used > ttl]:
            del self._sessions[session_id]
            logger.info("session %s dropped after %.0f s idle", session_id, ttl)


def _describe_change(session: Session, chunk: EEGChunk) -> str:
    if session.sfreq != chunk.sfreq:
        return f"sfreq changed from {session.sfreq:g} to {chunk.sfreq:g} Hz"
    return "ch_names changed"
