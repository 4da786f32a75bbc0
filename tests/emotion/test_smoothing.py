"""Per-session EMA of the primary face's probabilities, kept in the shared session store."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from shared_protocol.errors import ErrorCode, ProtocolError
from vigil_emotion.smoothing import SessionSmoother

HAPPY = np.array([0.0, 1.0, 0.0])
SAD = np.array([0.0, 0.0, 1.0])
A = ("local", "a")
B = ("local", "b")


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def smoother(alpha=0.5, clock=None, **kw):
    kw = {"max_gap_s": 5.0, "max_sessions": 10, "max_sessions_per_owner": 10, "idle_ttl_s": 60.0, **kw}
    return SessionSmoother(alpha, clock=clock or FakeClock(), **kw)


def test_ema_follows_the_formula():
    s = smoother(alpha=0.25)
    first = s.update(A, HAPPY)
    assert first.restarted and first.frames == 1
    np.testing.assert_allclose(first.probabilities, HAPPY)
    second = s.update(A, SAD)
    np.testing.assert_allclose(second.probabilities, 0.25 * SAD + 0.75 * HAPPY)
    assert second.frames == 2 and not second.restarted
    third = s.update(A, SAD)
    np.testing.assert_allclose(third.probabilities, 0.25 * SAD + 0.75 * (0.25 * SAD + 0.75 * HAPPY))
    assert third.probabilities.sum() == pytest.approx(1.0)


def test_frame_without_face_carries_the_average_over():
    s = smoother()
    assert s.update(A, None) is None  # nothing seen yet
    s.update(A, HAPPY)
    carried = s.update(A, None)
    np.testing.assert_allclose(carried.probabilities, HAPPY)
    assert carried.frames == 1


def test_sessions_are_independent_and_reset_works():
    s = smoother()
    s.update(A, HAPPY)
    s.update(B, SAD)
    np.testing.assert_allclose(s.update(A, None).probabilities, HAPPY)
    reset = s.update(A, SAD, reset=True)
    assert reset.restarted and reset.frames == 1
    np.testing.assert_allclose(reset.probabilities, SAD)
    np.testing.assert_allclose(s.update(B, None).probabilities, SAD)


def test_same_session_id_of_two_owners_is_two_sessions():
    s = smoother()
    s.update(("x", "cam"), HAPPY)
    assert s.update(("y", "cam"), None) is None
    s.update(("y", "cam"), SAD, reset=True)
    np.testing.assert_allclose(s.update(("x", "cam"), None).probabilities, HAPPY)


def test_timestamp_backwards_or_gap_restarts():
    s = smoother(max_gap_s=2.0)
    s.update(A, HAPPY, timestamp=10.0)
    assert s.update(A, SAD, timestamp=9.0).restarted  # backwards
    assert not s.update(A, HAPPY, timestamp=10.0).restarted
    assert s.update(A, HAPPY, timestamp=13.0).restarted  # 3 s gap > 2 s
    assert not s.update(A, HAPPY, timestamp=14.0).restarted


def test_idle_sessions_expire():
    clock = FakeClock()
    s = smoother(clock=clock, idle_ttl_s=10.0)
    s.update(A, HAPPY)
    clock.now = 5.0
    s.update(B, HAPPY)
    clock.now = 12.0  # a idle 12 s (> 10), b idle 7 s
    s.update(("local", "c"), SAD)
    assert A not in s and B in s and len(s) == 2
    assert s.update(A, None) is None  # a starts afresh


def test_owner_quota_evicts_only_the_owners_least_recently_used():
    s = smoother(max_sessions=10, max_sessions_per_owner=2)
    s.update(("other", "keep"), HAPPY)
    s.update(A, HAPPY)
    s.update(B, HAPPY)
    s.update(A, HAPPY)  # a is now the owner's most recently used
    s.update(("local", "c"), SAD)  # third session of "local": its LRU (b) goes
    assert B not in s and A in s and ("local", "c") in s and ("other", "keep") in s


def test_full_store_refuses_new_sessions_and_keeps_the_old():
    s = smoother(max_sessions=2)
    s.update(A, HAPPY)
    s.update(B, SAD)
    with pytest.raises(ProtocolError) as info:
        s.update(("local", "c"), HAPPY)
    assert info.value.code == ErrorCode.OVERLOADED
    with pytest.raises(ProtocolError):
        s.update(("local", "c"), HAPPY, reset=True)
    assert s.update(A, None).frames == 1 and s.update(B, SAD, reset=True).frames == 1
    assert len(s) == 2


def test_concurrent_updates_are_all_counted():
    s = smoother(alpha=0.1)
    threads = [threading.Thread(target=lambda: [s.update(A, HAPPY) for _ in range(200)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert s.update(A, None).frames == 800


def test_alpha_must_be_a_weight():
    with pytest.raises(ValueError):
        smoother(alpha=0.0)
