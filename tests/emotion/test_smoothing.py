"""Per-session EMA of the primary face's probabilities."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from vigil_emotion.smoothing import SessionSmoother

HAPPY = np.array([0.0, 1.0, 0.0])
SAD = np.array([0.0, 0.0, 1.0])


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def smoother(alpha=0.5, clock=None, **kw):
    kw = {"max_gap_s": 5.0, "max_sessions": 10, "idle_ttl_s": 60.0, **kw}
    return SessionSmoother(alpha, clock=clock or FakeClock(), **kw)


def test_ema_follows_the_formula():
    s = smoother(alpha=0.25)
    first = s.update("a", HAPPY)
    assert first.restarted and first.frames == 1
    np.testing.assert_allclose(first.probabilities, HAPPY)
    second = s.update("a", SAD)
    np.testing.assert_allclose(second.probabilities, 0.25 * SAD + 0.75 * HAPPY)
    assert second.frames == 2 and not second.restarted
    third = s.update("a", SAD)
    np.testing.assert_allclose(third.probabilities, 0.25 * SAD + 0.75 * (0.25 * SAD + 0.75 * HAPPY))
    assert third.probabilities.sum() == pytest.approx(1.0)


def test_frame_without_face_carries_the_average_over():
    s = smoother()
    assert s.update("a", None) is None  # nothing seen yet
    s.update("a", HAPPY)
    carried = s.update("a", None)
    np.testing.assert_allclose(carried.probabilities, HAPPY)
    assert carried.frames == 1


def test_sessions_are_independent_and_reset_works():
    s = smoother()
    s.update("a", HAPPY)
    s.update("b", SAD)
    np.testing.assert_allclose(s.update("a", None).probabilities, HAPPY)
    reset = s.update("a", SAD, reset=True)
    assert reset.restarted and reset.frames == 1
    np.testing.assert_allclose(reset.probabilities, SAD)
    np.testing.assert_allclose(s.update("b", None).probabilities, SAD)


def test_timestamp_backwards_or_gap_restarts():
    s = smoother(max_gap_s=2.0)
    s.update("a", HAPPY, timestamp=10.0)
    assert s.update("a", SAD, timestamp=9.0).restarted  # backwards
    assert not s.update("a", HAPPY, timestamp=10.0).restarted
    assert s.update("a", HAPPY, timestamp=13.0).restarted  # 3 s gap > 2 s
    assert not s.update("a", HAPPY, timestamp=14.0).restarted


def test_idle_sessions_expire_and_lru_bound():
    clock = FakeClock()
    s = smoother(clock=clock, idle_ttl_s=10.0, max_sessions=2)
    s.update("a", HAPPY)
    clock.now = 5.0
    s.update("b", HAPPY)
    clock.now = 12.0  # a idle 12 s (> 10), b idle 7 s
    s.update("c", SAD)
    assert len(s) == 2
    assert s.update("a", None) is None  # a was expired
    # Now a (just touched, empty), c and b: three > max_sessions 2 -> least recently used (b) dropped.
    assert s.update("b", None) is None


def test_concurrent_updates_are_all_counted():
    s = smoother(alpha=0.1)
    threads = [threading.Thread(target=lambda: [s.update("a", HAPPY) for _ in range(200)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert s.update("a", None).frames == 800


def test_alpha_must_be_a_weight():
    with pytest.raises(ValueError):
        smoother(alpha=0.0)
