"""Session metrics on synthetic landmark-derived streams with known timestamps (no images)."""

import pytest

from vigil_fatigue.session import THRESHOLD_CALIBRATED, THRESHOLD_DEFAULT, FrameObservation, SessionTracker
from vigil_fatigue.settings import FatigueSettings

OPEN, CLOSED = 0.30, 0.08  # EAR values far on each side of the default 0.2 threshold
DT = 0.1  # 10 frames/s


def frame(t, ear=OPEN, mar=0.1, pitch=0.0):
    return FrameObservation(round(t, 6), True, ear=ear, mar=mar, pitch=pitch)


def no_face(t):
    return FrameObservation(round(t, 6), False)


def feed(tracker, observations):
    events = []
    for obs in observations:
        verdict = tracker.observe(obs)
        events.extend((obs.timestamp, e) for e in verdict.events)
    return events


def timeline(start, end, closed_spans=(), mar_spans=(), pitch_spans=(), dt=DT):
    """Frames every dt in [start, end); eyes closed for t in any closed span [a, b), etc."""
    n = round((end - start) / dt)
    out = []
    for i in range(n):
        t = round(start + i * dt, 6)
        closed = any(a <= t < b for a, b in closed_spans)
        mar = 0.8 if any(a <= t < b for a, b in mar_spans) else 0.1
        pitch = 25.0 if any(a <= t < b for a, b in pitch_spans) else 0.0
        out.append(frame(t, CLOSED if closed else OPEN, mar, pitch))
    return out


@pytest.fixture
def settings():
    # Calibration off the table here (tests below opt in): a huge minimum frame count keeps the
    # default threshold so that the windowing is tested alone.
    return FatigueSettings(calibration_min_frames=10**9)


def test_perclos_is_exact_share_of_closed_time(settings):
    tracker = SessionTracker("s", settings)
    # 0..20 s at 10 fps; closed 5.0-8.0 and 12.0-12.3 -> 3.3 s closed over 19.9 s observed (the last
    # frame at 19.9 s has no duration yet).
    feed(tracker, timeline(0, 20, closed_spans=[(5.0, 8.0), (12.0, 12.3)]))
    m = tracker.metrics()
    assert m["observed_s"] == pytest.approx(19.9)
    assert m["closed_s"] == pytest.approx(3.3)
    assert m["perclos"] == pytest.approx(3.3 / 19.9)


def test_perclos_window_slides(settings):
    tracker = SessionTracker("s", settings)
    # Closed 10-20 s, then open until 100 s: at t=99.9 the window [39.9, 99.9] holds no closure.
    feed(tracker, timeline(0, 30, closed_spans=[(10, 20)]))
    assert tracker.metrics()["closed_s"] == pytest.approx(10.0)
    feed(tracker, timeline(30, 75))
    # now 74.9: window starts at 14.9 -> closed 14.9..20 = 5.1 s of 60 s observed.
    m = tracker.metrics()
    assert m["closed_s"] == pytest.approx(5.1)
    assert m["observed_s"] == pytest.approx(60.0)
    feed(tracker, timeline(75, 100))
    m = tracker.metrics()
    assert m["closed_s"] == 0 and m["perclos"] == 0
    assert m["observed_s"] == pytest.approx(60.0)


def test_blinks_counted_with_exact_durations(settings):
    tracker = SessionTracker("s", settings)
    spans = [(2.0, 2.2), (5.0, 5.4), (8.0, 8.5), (11.0, 11.1)]  # 0.2, 0.4, 0.5, 0.1 s
    events = feed(tracker, timeline(0, 15, closed_spans=spans))
    assert [e for e in events if e[1] == "blink"] == [(2.2, "blink"), (5.4, "blink"), (8.5, "blink"), (11.1, "blink")]
    m = tracker.metrics()
    assert m["blink_count"] == 4
    assert m["blink_mean_duration_s"] == pytest.approx((0.2 + 0.4 + 0.5 + 0.1) / 4)
    assert m["blink_rate_per_min"] == pytest.approx(4 / (14.9 / 60))
    assert m["microsleep_count"] == 0 and m["long_closure_count"] == 0


def test_closure_kinds_long_closure_and_microsleeps(settings):
    tracker = SessionTracker("s", settings)
    # 0.7 s: long closure (not a blink, not a microsleep); 1.0 s and 2.5 s: microsleeps, reported
    # on the frame where the closure reaches 1 s; 0.04 s would be under 50 ms (cannot happen at 10 fps).
    events = feed(tracker, timeline(0, 20, closed_spans=[(3.0, 3.7), (6.0, 7.0), (10.0, 12.5)]))
    assert events == [(3.7, "long_closure"), (7.0, "microsleep"), (11.0, "microsleep")]
    m = tracker.metrics()
    assert (m["blink_count"], m["long_closure_count"], m["microsleep_count"]) == (0, 1, 2)


def test_microsleep_reported_while_eyes_still_closed(settings):
    tracker = SessionTracker("s", settings)
    feed(tracker, timeline(0, 2) + timeline(2, 3.5, closed_spans=[(2, 3.5)]))
    m = tracker.metrics()
    assert m["microsleep_count"] == 1
    assert m["eyes_closed_duration_s"] == pytest.approx(1.4)


def test_closure_ended_by_a_late_open_frame_is_a_microsleep(settings):
    tracker = SessionTracker("s", settings)
    # Closed frames at 1.0 and 1.8, open frame at 2.4 (gaps < max_frame_gap_s): 1.4 s closure.
    events = feed(tracker, [frame(0.5), frame(1.0, CLOSED), frame(1.8, CLOSED), frame(2.4)])
    assert events == [(2.4, "microsleep")]


def test_yawns_need_sustained_open_mouth(settings):
    tracker = SessionTracker("s", settings)
    # Open 2.0-3.5 and 20.0-23.9 (frames): yawns, reported 1.5 s in; 10.0-10.9 (speech): no yawn.
    events = feed(tracker, timeline(0, 30, mar_spans=[(2.0, 3.6), (10.0, 11.0), (20.0, 24.0)]))
    assert [e for e in events if e[1] == "yawn"] == [(3.5, "yawn"), (21.5, "yawn")]
    m = tracker.metrics()
    assert m["yawn_count"] == 2
    assert m["yawn_rate_per_min"] == pytest.approx(2 / (29.9 / 60))


def test_nods_are_pitch_drops_below_the_calibrated_baseline():
    settings = FatigueSettings(calibration_s=2.0, calibration_min_frames=10)
    tracker = SessionTracker("s", settings)
    # Baseline pitch 0 from the first 2 s; drops of 25 degrees for 0.5 s -> nods; 0.1 s -> jitter.
    events = feed(tracker, timeline(0, 20, pitch_spans=[(5.0, 5.5), (9.0, 9.1), (14.0, 15.0)]))
    assert [e for e in events if e[1] == "nod"] == [(5.2, "nod"), (14.2, "nod")]
    assert tracker.metrics()["nod_count"] == 2


def test_no_nods_before_a_pitch_baseline_exists(settings):
    tracker = SessionTracker("s", settings)
    events = feed(tracker, timeline(0, 10, pitch_spans=[(5.0, 6.0)]))
    assert not [e for e in events if e[1] == "nod"]


def test_no_face_frames_are_not_closed_time_and_break_episodes(settings):
    tracker = SessionTracker("s", settings)
    frames = timeline(0, 5) + [no_face(round(5 + i * DT, 6)) for i in range(30)] + timeline(8, 10)
    feed(tracker, frames)
    m = tracker.metrics()
    assert m["closed_s"] == 0
    assert m["observed_s"] == pytest.approx(5.0 + 1.9)  # 0..5 and 8..9.9; no-face time excluded
    # A closure interrupted by a lost face is not a blink (its length is unknown).
    tracker = SessionTracker("s2", settings)
    events = feed(tracker, [frame(0.0), frame(0.1, CLOSED), no_face(0.2), frame(0.3)])
    assert events == []


def test_gaps_are_not_counted_and_break_episodes(settings):
    tracker = SessionTracker("s", settings)
    # Closed at 1.0, then nothing until 4.0 (gap 3 s > max 1 s): at most 1 s of the gap counts,
    # and the closure (length unknown) is neither blink nor microsleep.
    events = feed(tracker, [frame(0.0), frame(1.0, CLOSED), frame(4.0), frame(5.0)])
    assert events == []
    m = tracker.metrics()
    assert m["closed_s"] == pytest.approx(1.0)
    assert m["observed_s"] == pytest.approx(1.0 + 1.0 + 1.0)


def test_out_of_order_and_duplicate_timestamps_are_ignored_with_a_warning(settings):
    tracker = SessionTracker("s", settings)
    feed(tracker, timeline(0, 5))
    before = tracker.metrics()
    for t in (4.9, 2.0, -1.0):
        verdict = tracker.observe(frame(t, CLOSED))
        assert not verdict.accepted
        assert ("duplicate" if t == 4.9 else "out-of-order") in verdict.warning
        assert verdict.eyes_closed is True  # the frame itself is still read
    assert tracker.metrics() == before
    verdict = tracker.observe(frame(5.0))
    assert verdict.accepted and verdict.warning is None


def test_eye_threshold_calibrates_from_the_sessions_own_open_eyes():
    settings = FatigueSettings(calibration_s=3.0, calibration_min_frames=20)
    tracker = SessionTracker("s", settings)
    # A subject with narrow eyes: open EAR 0.22-0.23 (around the default threshold).
    frames = [frame(i * DT, ear=0.22 + (0.01 if i % 2 else 0.0)) for i in range(40)]
    feed(tracker, frames[:30])
    assert tracker.metrics()["ear_threshold_source"] == THRESHOLD_DEFAULT
    assert tracker.metrics()["ear_threshold"] == settings.default_ear_threshold
    feed(tracker, frames[30:])
    m = tracker.metrics()
    assert m["ear_threshold_source"] == THRESHOLD_CALIBRATED
    assert m["ear_open_baseline"] == pytest.approx(0.23)  # 70th percentile of 0.22/0.23
    floor = 0.5 * 0.23  # closed_ear_floor_ratio x open EAR
    expected = floor + 0.2 * (0.23 - floor)
    assert m["ear_threshold"] == pytest.approx(expected)
    # The calibrated threshold now decides: 0.15 is above it (open), 0.07 below (closed).
    assert tracker.observe(frame(4.1, ear=0.15)).eyes_closed is False
    assert tracker.observe(frame(4.2, ear=0.07)).eyes_closed is True


def test_calibration_waits_for_enough_face_frames():
    settings = FatigueSettings(calibration_s=1.0, calibration_min_frames=15)
    tracker = SessionTracker("s", settings)
    feed(tracker, [frame(t) for t in (0.0, 0.5, 1.0, 1.5, 2.0)])  # time passed, too few frames
    assert tracker.metrics()["ear_threshold_source"] == THRESHOLD_DEFAULT


def test_calibrated_threshold_is_clipped_to_a_sane_band():
    settings = FatigueSettings(calibration_s=1.0, calibration_min_frames=5)
    tracker = SessionTracker("s", settings)
    feed(tracker, [frame(i * DT, ear=1.5) for i in range(20)])  # absurd open EAR
    assert tracker.metrics()["ear_threshold"] == settings.max_ear_threshold


def test_rates_are_null_until_enough_time_is_observed(settings):
    tracker = SessionTracker("s", settings)
    feed(tracker, timeline(0, 5, closed_spans=[(1.0, 1.2)]))
    m = tracker.metrics()
    assert m["blink_count"] == 1 and m["blink_rate_per_min"] is None and m["yawn_rate_per_min"] is None


def _brute_force_closed_observed(observations, now, settings):
    """Direct definition: each frame's state holds until the next frame, at most max_frame_gap_s,
    counted inside [now - window, now]."""
    start = now - settings.perclos_window_s
    closed = observed = 0.0
    for a, b in zip(observations, observations[1:], strict=False):
        if not a.face_detected:
            continue
        lo, hi = max(a.timestamp, start), min(b.timestamp, a.timestamp + settings.max_frame_gap_s)
        if hi > lo:
            observed += hi - lo
            if a.ear < settings.default_ear_threshold:
                closed += hi - lo
    return closed, observed


def test_running_window_sums_match_the_definition_on_a_long_random_stream(settings):
    import random

    rng = random.Random(7)
    tracker = SessionTracker("s", settings)
    observations, t = [], 0.0
    for i in range(6000):  # ~10 min with jitter, dropouts, gaps and faces lost
        t += rng.choice([0.033, 0.034, 0.05, 0.1]) if rng.random() > 0.002 else rng.uniform(1.0, 5.0)
        t = round(t, 6)
        obs = no_face(t) if rng.random() < 0.05 else frame(t, CLOSED if rng.random() < 0.2 else OPEN)
        observations.append(obs)
        tracker.observe(obs)
        if i % 500 == 499:
            closed, observed = _brute_force_closed_observed(observations, t, settings)
            m = tracker.metrics()
            assert m["closed_s"] == pytest.approx(closed, abs=1e-6)
            assert m["observed_s"] == pytest.approx(observed, abs=1e-6)
