"""Episode detectors on a timestamped stream: a state that must persist to become an event."""

from __future__ import annotations

from dataclasses import dataclass

# Timestamps are floats (0.1 + 0.2 != 0.3): durations within a microsecond of a limit reach it.
TIME_EPS = 1e-6


@dataclass
class SustainedState:
    """Tracks a boolean condition; reports once when it has held for `min_duration` seconds.

    Used for yawns (mouth open >= 1.5 s), nods (pitch down >= 0.2 s) and microsleeps. A gap in
    the stream or a frame without a face breaks the episode (its duration is unknown).
    """

    min_duration: float
    since: float | None = None  # timestamp of the first frame of the current episode
    reported: bool = False

    def update(self, timestamp: float, active: bool) -> bool:
        """Feed one frame; True exactly once per episode, on the frame that reaches min_duration."""
        if not active:
            self.break_off()
            return False
        if self.since is None:
            self.since = timestamp
        if not self.reported and timestamp - self.since >= self.min_duration - TIME_EPS:
            self.reported = True
            return True
        return False

    def duration(self, timestamp: float) -> float:
        return 0.0 if self.since is None else timestamp - self.since

    def break_off(self) -> None:
        self.since = None
        self.reported = False


@dataclass
class ClosureEpisode:
    """Eye-closure episode: from the first closed frame to the first open frame after it."""

    since: float | None = None

    def start_or_continue(self, timestamp: float) -> None:
        if self.since is None:
            self.since = timestamp

    def finish(self, timestamp: float) -> float | None:
        """Close the episode at an open frame; returns its duration, None if none was running."""
        if self.since is None:
            return None
        duration = timestamp - self.since
        self.since = None
        return duration

    def abort(self) -> None:
        self.since = None
