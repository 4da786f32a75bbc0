from vigil_fatigue.session import FrameObservation
from vigil_fatigue.settings import FatigueSettings
from vigil_fatigue.store import SessionStore


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_sessions_are_bounded_least_recently_used_first():
    store = SessionStore(FatigueSettings(max_sessions=3), clock=Clock())
    for name in ("a", "b", "c"):
        store.get(name)
    store.get("a")  # a is now the most recent
    store.get("d")
    assert len(store) == 3 and "b" not in store and "a" in store


def test_idle_sessions_expire_by_wall_clock():
    clock = Clock()
    store = SessionStore(FatigueSettings(session_idle_ttl_s=100), clock=clock)
    store.get("old")
    clock.now = 60
    store.get("young")
    clock.now = 150  # old idle 150 s, young 90 s
    store.get("new")
    assert "old" not in store and "young" in store and "new" in store


def test_reset_forgets_state():
    store = SessionStore(FatigueSettings(), clock=Clock())
    tracker = store.get("s")
    tracker.observe(FrameObservation(5.0, True, ear=0.3, mar=0.1, pitch=0.0))
    assert store.reset("s") is True
    fresh = store.get("s")
    assert fresh is not tracker and fresh.frames == 0
    # After a reset an earlier timestamp is fine again (a new recording).
    assert fresh.observe(FrameObservation(1.0, True, ear=0.3)).accepted
    assert store.reset("missing") is False
