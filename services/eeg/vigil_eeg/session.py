"""Per-session stream state (ring buffer, baseline) and the rule for a chunk that starts a new stream.

The sessions live in the shared `shared_protocol.sessions.SessionStore`, keyed by (owner, session_id):
a client can neither read, reset, evict nor write another client's session. Idle sessions expire
after `session_ttl_s`; a client beyond `max_sessions_per_owner` loses its own least recently used
session; a full store (`max_sessions`) refuses a new session with `overloaded`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from shared_protocol import BadRequestError
from shared_protocol.sessions import SessionKey, SessionStore

from .payload import EEGChunk
from .ring_buffer import RingBuffer
from .scoring import Baseline
from .settings import EEGSettings

logger = logging.getLogger(__name__)


class Session:
    def __init__(self, session_id: str, sfreq: float, ch_names: tuple[str, ...], settings: EEGSettings) -> None:
        self.session_id = session_id  # the client's own name, echoed in replies (never the owner)
        self.sfreq = sfreq
        self.ch_names = ch_names
        self.window_samples = max(1, round(settings.window_s * sfreq))
        self.min_samples = max(1, round(settings.min_window_s * sfreq))
        self.buffer = RingBuffer(len(ch_names), self.window_samples)
        self.baseline = Baseline(settings.baseline_windows)
        self.samples_received = 0
        self.next_timestamp: float | None = None  # expected timestamp of the next chunk
        self.lock = threading.Lock()  # held while a request reads or changes this session
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


class StreamSessions:
    """The service's sessions: looked up, created, reset or refused per chunk."""

    def __init__(self, settings: EEGSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self.store: SessionStore[Session] = SessionStore(
            max_sessions=settings.max_sessions,
            max_sessions_per_owner=settings.max_sessions_per_owner,
            idle_ttl_s=settings.session_ttl_s,
            clock=clock,
        )
        # Look-up, stream-change check and replacement are one step: two chunks of one session never
        # both decide on the same old state.
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.store)

    def __contains__(self, key: SessionKey) -> bool:
        return key in self.store

    def clear(self) -> None:
        self.store.clear()

    def acquire(self, chunk: EEGChunk) -> tuple[Session, list[str]]:
        """The chunk's session (created, reset or refused as settings say) and any warnings.

        BadRequestError for a stream change under `on_stream_change: error`; the store's
        `overloaded` error when the chunk needs a new session and the store is full."""
        key = chunk.session_key
        with self._lock:
            session = self.store.get(key)
            if session is not None and chunk.reset_session:
                return self._replace(key, chunk), ["session reset on request"]
            if session is not None and (session.sfreq != chunk.sfreq or session.ch_names != chunk.ch_names):
                change = _describe_change(session, chunk)
                if self._settings.on_stream_change == "error":
                    raise BadRequestError(
                        f"'data.eeg' {change} within session {chunk.session_id!r}; "
                        "send reset_session=true to start a new stream"
                    )
                logger.warning("session %r: %s; reset", chunk.session_id, change)
                return self._replace(key, chunk), [f"{change}; session reset"]
            if session is None:
                session = self.store.get_or_create(key, lambda: self._new(chunk))
            return session, []

    def _replace(self, key: SessionKey, chunk: EEGChunk) -> Session:
        return self.store.replace(key, self._new(chunk))

    def _new(self, chunk: EEGChunk) -> Session:
        return Session(chunk.session_id, chunk.sfreq, chunk.ch_names, self._settings)


def _describe_change(session: Session, chunk: EEGChunk) -> str:
    if session.sfreq != chunk.sfreq:
        return f"sfreq changed from {session.sfreq:g} to {chunk.sfreq:g} Hz"
    return "ch_names changed"
