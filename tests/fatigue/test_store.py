"""Sessions live in the shared store, keyed by (owner, session_id)."""

import pytest

from shared_protocol.errors import ErrorCode, ProtocolError
from shared_protocol.fields import RequestData
from vigil_fatigue.analyzer import FatigueAnalyzer
from vigil_fatigue.request import parse_request
from vigil_fatigue.session import FrameObservation
from vigil_fatigue.settings import FatigueSettings
from vigil_fatigue.store import FatigueSessions


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_an_owner_over_its_quota_loses_its_own_oldest_session_only():
    store = FatigueSessions(FatigueSettings(max_sessions=10, max_sessions_per_owner=2), clock=Clock())
    store.get(("a", "s1"))
    for name in ("x", "y", "z"):  # b churns through sessions
        store.get(("b", name))
    assert ("a", "s1") in store
    assert ("b", "x") not in store and ("b", "y") in store and ("b", "z") in store


def test_a_full_store_refuses_new_sessions_instead_of_evicting_others():
    store = FatigueSessions(FatigueSettings(max_sessions=2, max_sessions_per_owner=2), clock=Clock())
    store.get(("a", "s1"))
    store.get(("a", "s2"))
    with pytest.raises(ProtocolError) as caught:
        store.get(("b", "s1"))
    assert caught.value.code is ErrorCode.OVERLOADED
    assert ("a", "s1") in store and ("a", "s2") in store


def test_idle_sessions_expire_by_server_clock():
    clock = Clock()
    store = FatigueSessions(FatigueSettings(session_idle_ttl_s=100), clock=clock)
    store.get(("o", "old"))
    clock.now = 60
    store.get(("o", "young"))
    clock.now = 150  # old idle 150 s, young 90 s
    store.get(("o", "new"))
    assert ("o", "old") not in store and ("o", "young") in store and ("o", "new") in store


def test_reset_forgets_state():
    store = FatigueSessions(FatigueSettings(), clock=Clock())
    tracker = store.get(("o", "s"))
    tracker.observe(FrameObservation(5.0, True, ear=0.3, mar=0.1, pitch=0.0))
    assert store.reset(("o", "s")) is True
    fresh = store.get(("o", "s"))
    assert fresh is not tracker and fresh.frames == 0
    # After a reset an earlier timestamp is fine again (a new recording).
    assert fresh.observe(FrameObservation(1.0, True, ear=0.3)).accepted
    assert store.reset(("o", "missing")) is False


class NoFaceEngine:
    """The analyzer's session logic needs no model here: every frame has no face."""

    name = "no-face"

    def detect(self, frames):
        return [[] for _ in frames]

    def close(self):
        pass


@pytest.fixture
def analyzer():
    return FatigueAnalyzer(NoFaceEngine(), FatigueSettings(max_sessions=4, max_sessions_per_owner=2))


def _frame(owner, session_id, timestamp, **extra):
    import base64

    import cv2
    import numpy as np

    ok, buf = cv2.imencode(".png", np.zeros((16, 16, 3), np.uint8))
    data = {"image": base64.b64encode(buf.tobytes()).decode(), "session_id": session_id, **extra}
    if timestamp is not None:
        data["timestamp"] = timestamp
    return parse_request(RequestData(data, owner=owner), FatigueSettings())


def test_a_second_owner_cannot_write_into_reset_or_evict_the_first_owners_session(analyzer):
    for t in (1.0, 2.0, 3.0):
        analyzer.analyze(_frame("a", "cam", t))
    # b uses the same session id: its own session, not a's.
    reply = analyzer.analyze(_frame("b", "cam", 1.0))
    assert reply["session"]["frames"] == 1 and "warning" not in reply
    # b resets "cam": only its own.
    reset = analyzer.analyze(parse_request(RequestData({"session_id": "cam", "reset_session": True}, owner="b"), None))
    assert reset["session_existed"] is True
    # b opens more sessions than its quota: its own oldest goes, never a's.
    for name in ("s1", "s2", "s3"):
        analyzer.analyze(_frame("b", name, 1.0))
    assert ("a", "cam") in analyzer.sessions and ("b", "s1") not in analyzer.sessions
    # a's session is intact: its next frame is its fourth.
    assert analyzer.analyze(_frame("a", "cam", 4.0))["session"]["frames"] == 4


def test_frames_without_timestamp_use_the_servers_clock_per_session(analyzer):
    clock = Clock()
    analyzer._clock = clock
    clock.now = 100.0
    first = analyzer.analyze(_frame("a", "s", None))
    second = analyzer.analyze(_frame("a", "s", None))  # same instant: still later
    clock.now = 100.5
    third = analyzer.analyze(_frame("a", "s", None))
    assert [r["timestamp_source"] for r in (first, second, third)] == ["server"] * 3
    assert first["timestamp"] == 100.0 and 100.0 < second["timestamp"] < 100.001 and third["timestamp"] == 100.5
    assert third["session"]["frames"] == 3 and "warning" not in second
    client = analyzer.analyze(_frame("a", "other", 7.0))
    assert client["timestamp_source"] == "client" and client["timestamp"] == 7.0


def test_a_session_keeps_one_clock(analyzer):
    from shared_protocol.errors import BadRequestError

    analyzer.analyze(_frame("a", "s", 1.0))
    with pytest.raises(BadRequestError, match="timestamp"):
        analyzer.analyze(_frame("a", "s", None))
    # Starting over may switch clocks.
    assert analyzer.analyze(_frame("a", "s", None, reset_session=True))["timestamp_source"] == "server"


def test_frames_without_timestamp_are_timed_at_arrival(analyzer):
    """A server-timed frame gets the time it reached the server (RequestData.received_at), not the
    time a worker got to it: frames that waited in a queue keep their real spacing."""
    analyzer._clock = lambda: 999.0  # the analysis time must not be used when the arrival is known

    def arrived(at):
        request = _frame("o", "t", None)
        return type(request)(**{**request.__dict__, "received_at": at})

    first = analyzer.analyze(arrived(100.0))
    second = analyzer.analyze(arrived(100.5))
    assert first["timestamp_source"] == "server" and (first["timestamp"], second["timestamp"]) == (100.0, 100.5)
