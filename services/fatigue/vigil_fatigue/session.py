"""Per-session state: eye-closure calibration and windowed metrics, driven by client timestamps."""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

import numpy as np

from .episodes import TIME_EPS, ClosureEpisode, SustainedState
from .settings import FatigueSettings

logger = logging.getLogger(__name__)

THRESHOLD_DEFAULT = "default"
THRESHOLD_CALIBRATED = "calibrated"


@dataclass(frozen=True)
class FrameObservation:
    """What one frame tells the session. Without a face, ear/mar/pitch are None."""

    timestamp: float
    face_detected: bool
    ear: float | None = None
    mar: float | None = None
    pitch: float | None = None
    # Where the subject looks (head pose + eye rotation, degrees, signs as HeadPose); None without
    # iris points or head pose.
    look_yaw: float | None = None
    look_pitch: float | None = None


@dataclass(frozen=True)
class FrameVerdict:
    """The session's reading of the frame it just took in."""

    accepted: bool
    warning: str | None
    eyes_closed: bool | None  # None without a face
    mouth_open: bool | None
    events: tuple[str, ...]  # completed on this frame: blink, long_closure, microsleep, yawn, nod, distraction
    gaze_on_target: bool | None = None  # None: not calibrated yet, eyes closed, or no gaze


class Calibration:
    """Open-eye EAR and neutral pitch of this subject, from the first seconds with a face."""

    def __init__(self, settings: FatigueSettings):
        self._settings = settings
        self._ears: list[float] = []
        self._pitches: list[float] = []
        self._looks: list[tuple[float, float]] = []
        self._first_timestamp: float | None = None
        self.open_ear: float | None = None
        self.pitch_baseline: float | None = None
        self.look_baseline: tuple[float, float] | None = None  # straight-ahead (yaw, pitch)
        self.threshold = settings.default_ear_threshold
        self.source = THRESHOLD_DEFAULT

    @property
    def done(self) -> bool:
        return self.source == THRESHOLD_CALIBRATED

    def add(self, timestamp: float, ear: float, pitch: float | None, look: tuple[float, float] | None = None) -> None:
        if self.done:
            return
        if self._first_timestamp is None:
            self._first_timestamp = timestamp
        self._ears.append(ear)
        if pitch is not None:
            self._pitches.append(pitch)
        if look is not None and ear >= self._settings.default_ear_threshold:  # closed eyes have no gaze
            self._looks.append(look)
        s = self._settings
        if timestamp - self._first_timestamp >= s.calibration_s and len(self._ears) >= s.calibration_min_frames:
            self._finish()

    def _finish(self) -> None:
        s = self._settings
        self.open_ear = float(np.percentile(self._ears, s.calibration_percentile))
        self.threshold = calibrated_ear_threshold(self.open_ear, s)
        self.pitch_baseline = float(np.median(self._pitches)) if self._pitches else None
        # Straight ahead = where the subject looked most of the first seconds (the median).
        if self._looks:
            yaws, pitches = zip(*self._looks, strict=True)
            self.look_baseline = (float(np.median(yaws)), float(np.median(pitches)))
        self.source = THRESHOLD_CALIBRATED
        self._ears.clear()
        self._pitches.clear()
        self._looks.clear()


def calibrated_ear_threshold(open_ear: float, settings: FatigueSettings) -> float:
    """P80 on the subject's open EAR: closed when the opening above the floor is below (1 - 0.8)
    of the open one; the floor (a shut eye's EAR) scales with the open EAR. Clipped to the
    settings' bounds."""
    floor = settings.closed_ear_floor_ratio * open_ear
    raw = floor + (1.0 - settings.perclos_closure_fraction) * (open_ear - floor)
    threshold = float(np.clip(raw, settings.min_ear_threshold, settings.max_ear_threshold))
    if raw != threshold:
        logger.warning("calibrated EAR threshold %.3f clipped to %.3f", raw, threshold)
    return threshold


class SessionTracker:
    """All windowed fatigue metrics of one session. Not thread-safe: the store serialises access."""

    def __init__(self, session_id: str, settings: FatigueSettings):
        self.session_id = session_id
        self._s = settings
        self.calibration = Calibration(settings)
        # Eye state per frame: True = closed, False = open, None = no face. A frame's state holds
        # until the next frame (at most max_frame_gap_s); those intervals (start, end, state) are
        # kept for the window with running sums, so a frame costs O(1), not O(window).
        self._last_state: bool | None = None
        self._intervals: deque[tuple[float, float, bool | None]] = deque()
        self._closed_sum = 0.0
        self._observed_sum = 0.0
        self._events: dict[str, deque[float]] = {
            name: deque() for name in ("blink", "long_closure", "microsleep", "yawn", "nod", "distraction")
        }
        self._blink_durations: deque[tuple[float, float]] = deque()  # (end timestamp, duration)
        self._closure = ClosureEpisode()
        self._microsleep = SustainedState(settings.microsleep_min_s)
        self._mouth = SustainedState(settings.yawn_min_s)
        self._nod = SustainedState(settings.nod_min_s)
        self._looking_away = SustainedState(settings.distraction_min_s)
        self._head_down = False
        self.first_timestamp: float | None = None
        self.last_timestamp: float | None = None
        self.frames = 0
        # "client" or "server": which clock times this session (set by the analyzer on the first frame).
        self.timestamp_source: str | None = None

    # ---- input -------------------------------------------------------------------------------

    def observe(self, obs: FrameObservation) -> FrameVerdict:
        if self.last_timestamp is not None and obs.timestamp <= self.last_timestamp:
            kind = "duplicate" if obs.timestamp == self.last_timestamp else "out-of-order"
            warning = (
                f"{kind} timestamp {obs.timestamp:g} (last accepted {self.last_timestamp:g}): "
                "frame not added to session metrics"
            )
            closed, mouth_open = self._classify(obs)
            return FrameVerdict(False, warning, closed, mouth_open, (), self._on_target(obs, closed))
        gap = None if self.last_timestamp is None else obs.timestamp - self.last_timestamp
        if self.first_timestamp is None:
            self.first_timestamp = obs.timestamp
        self.last_timestamp = obs.timestamp
        self.frames += 1
        if gap is not None and gap > self._s.max_frame_gap_s:
            self._break_episodes()  # what happened in the gap is unknown
        if obs.face_detected and obs.ear is not None:
            look = None if obs.look_yaw is None or obs.look_pitch is None else (obs.look_yaw, obs.look_pitch)
            self.calibration.add(obs.timestamp, obs.ear, obs.pitch, look)
        closed, mouth_open = self._classify(obs)
        on_target = self._on_target(obs, closed)
        events = self._update_episodes(obs, closed, mouth_open, on_target)
        for name in events:
            self._events[name].append(obs.timestamp)
        if gap is not None:
            self._add_interval(obs.timestamp - gap, obs.timestamp, self._last_state)
        self._last_state = closed
        self._prune(obs.timestamp)
        return FrameVerdict(True, None, closed, mouth_open, tuple(events), on_target)

    def _classify(self, obs: FrameObservation) -> tuple[bool | None, bool | None]:
        if not obs.face_detected or obs.ear is None:
            return None, None
        mouth_open = None if obs.mar is None else obs.mar >= self._s.mouth_open_mar
        return obs.ear < self.calibration.threshold, mouth_open

    def _on_target(self, obs: FrameObservation, closed: bool | None) -> bool | None:
        """Is the subject looking within the tolerance of its calibrated straight-ahead direction?"""
        baseline = self.calibration.look_baseline
        if closed is not False or baseline is None or obs.look_yaw is None or obs.look_pitch is None:
            return None
        s = self._s
        return (
            abs(obs.look_yaw - baseline[0]) <= s.gaze_yaw_tolerance_deg
            and abs(obs.look_pitch - baseline[1]) <= s.gaze_pitch_tolerance_deg
        )

    def _update_episodes(
        self, obs: FrameObservation, closed: bool | None, mouth_open: bool | None, on_target: bool | None
    ) -> list[str]:
        events: list[str] = []
        t = obs.timestamp
        if closed is None:  # no face: episodes cannot be followed
            self._break_episodes()
            return events
        if closed:
            self._closure.start_or_continue(t)
            if self._microsleep.update(t, True):  # reported while still closed, not only at the end
                events.append("microsleep")
        else:
            microsleep_reported = self._microsleep.reported
            self._microsleep.break_off()
            duration = self._closure.finish(t)
            if duration is not None:
                events.extend(self._classify_closure(t, duration, microsleep_reported))
        if self._mouth.update(t, bool(mouth_open)):
            events.append("yawn")
        if self._nod.update(t, self._is_head_down(obs.pitch)):
            events.append("nod")
        # Looking away: a blink (gaze unknown) neither ends nor extends the glance.
        if on_target is not None and self._looking_away.update(t, not on_target):
            events.append("distraction")
        return events

    def _classify_closure(self, t: float, duration: float, microsleep_reported: bool) -> list[str]:
        s = self._s
        if s.blink_min_s - TIME_EPS <= duration <= s.blink_max_s + TIME_EPS:
            self._blink_durations.append((t, duration))
            return ["blink"]
        if duration >= s.microsleep_min_s - TIME_EPS:
            return [] if microsleep_reported else ["microsleep"]  # the open frame reached 1 s
        if duration > s.blink_max_s:
            return ["long_closure"]
        return []  # shorter than a blink: noise

    def _is_head_down(self, pitch: float | None) -> bool:
        baseline = self.calibration.pitch_baseline
        if pitch is None or baseline is None:
            self._head_down = False
            return False
        drop = pitch - baseline
        delta = self._s.nod_pitch_delta_deg
        # Hysteresis: down at `delta`, up again only below half of it, so jitter makes one nod.
        self._head_down = drop >= delta if not self._head_down else drop >= delta / 2.0
        return self._head_down

    def _break_episodes(self) -> None:
        self._closure.abort()
        self._microsleep.break_off()
        self._mouth.break_off()
        self._nod.break_off()
        self._looking_away.break_off()
        self._head_down = False

    def _add_interval(self, start: float, next_frame: float, state: bool | None) -> None:
        end = min(next_frame, start + self._s.max_frame_gap_s)
        self._intervals.append((start, end, state))
        if state is not None:
            self._observed_sum += end - start
            if state:
                self._closed_sum += end - start

    def _prune(self, now: float) -> None:
        start = now - self._s.perclos_window_s
        while self._intervals and self._intervals[0][1] <= start:
            t0, end, state = self._intervals.popleft()
            if state is not None:
                self._observed_sum -= end - t0
                if state:
                    self._closed_sum -= end - t0
        if not self._intervals:  # no drift from adding and subtracting floats
            self._closed_sum = self._observed_sum = 0.0
        for times in self._events.values():
            while times and times[0] < start:
                times.popleft()
        while self._blink_durations and self._blink_durations[0][0] < start:
            self._blink_durations.popleft()

    # ---- output ------------------------------------------------------------------------------

    def metrics(self) -> dict:
        """Windowed metrics as of the last accepted frame (JSON-ready)."""
        now = self.last_timestamp
        s = self._s
        closed_s, observed_s = self._closed_and_observed(now)
        span = 0.0 if now is None else min(s.perclos_window_s, now - self.first_timestamp)
        counts = {name: len(times) for name, times in self._events.items()}
        durations = [d for _, d in self._blink_durations]

        def per_min(count: int) -> float | None:
            return count / (span / 60.0) if span >= s.min_rate_span_s else None

        return {
            "window_s": s.perclos_window_s,
            "span_s": span,
            "observed_s": observed_s,
            "closed_s": closed_s,
            "perclos": closed_s / observed_s if observed_s > 0 else None,
            "blink_count": counts["blink"],
            "blink_rate_per_min": per_min(counts["blink"]),
            "blink_mean_duration_s": float(np.mean(durations)) if durations else None,
            "long_closure_count": counts["long_closure"],
            "microsleep_count": counts["microsleep"],
            "yawn_count": counts["yawn"],
            "yawn_rate_per_min": per_min(counts["yawn"]),
            "nod_count": counts["nod"],
            "nod_rate_per_min": per_min(counts["nod"]),
            "distraction_count": counts["distraction"],
            "looking_away_duration_s": self._looking_away.duration(now) if now is not None else 0.0,
            "gaze_baseline": None
            if self.calibration.look_baseline is None
            else {"yaw": self.calibration.look_baseline[0], "pitch": self.calibration.look_baseline[1]},
            "eyes_closed_duration_s": 0.0 if self._closure.since is None else now - self._closure.since,
            "ear_threshold": self.calibration.threshold,
            "ear_threshold_source": self.calibration.source,
            "ear_open_baseline": self.calibration.open_ear,
            "pitch_baseline": self.calibration.pitch_baseline,
            "frames": self.frames,
        }

    def _closed_and_observed(self, now: float | None) -> tuple[float, float]:
        if now is None or not self._intervals:
            return 0.0, 0.0
        closed, observed = self._closed_sum, self._observed_sum
        # Only the oldest interval can reach back before the window start: cut that part off.
        t0, end, state = self._intervals[0]
        cut = min(end, now - self._s.perclos_window_s) - t0
        if cut > 0 and state is not None:
            observed -= cut
            if state:
                closed -= cut
        # Rounded to 1e-9 s: running sums carry float noise far below any frame interval.
        return max(0.0, round(closed, 9)), max(0.0, round(observed, 9))
