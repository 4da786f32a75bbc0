"""EEGBackend.process_inference without a socket: streaming, sessions, policies, thread safety."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from eeg import samples

from shared_protocol.errors import BadRequestError, ErrorCode, ProtocolError
from shared_protocol.fields import RequestData
from vigil_eeg.backend import EEGBackend
from vigil_eeg.payload import parse_request
from vigil_eeg.session import StreamSessions
from vigil_eeg.settings import EEGSettings


def make_backend(**overrides) -> EEGBackend:
    backend = EEGBackend("127.0.0.1", 0, settings=EEGSettings(**overrides))
    backend.initialize_model()
    return backend


def chunk_request(x: np.ndarray, session: str = "s1", timestamp: float | None = None, **eeg_changes) -> dict:
    eeg = samples.eeg_payload_b64(x, samples.CH_NAMES[: x.shape[0]])
    eeg.update(eeg_changes)
    data = {"session_id": session, "eeg": eeg}
    if timestamp is not None:
        data["timestamp"] = timestamp
    return data


def stream(backend: EEGBackend, x: np.ndarray, chunk_s: float = 0.5, session: str = "s1", t0: float = 0.0):
    step = int(samples.SFREQ * chunk_s)
    replies = []
    for start in range(0, x.shape[1], step):
        replies.append(
            backend.process_inference(chunk_request(x[:, start : start + step], session, t0 + start / samples.SFREQ))
        )
    return replies


def test_valid_sample_is_analysed_at_once_and_json_serialisable():
    reply = make_backend().process_inference(samples.valid_data())
    json.dumps(reply, allow_nan=False)
    assert reply["window_full"] and reply["analyzed"]
    assert reply["fatigue_level"] in ("alert", "drowsy", "very_drowsy")
    assert 0.0 <= reply["prediction"] <= 1.0 and 0.0 < reply["confidence"] <= 1.0
    assert reply["relative_power"]["mean"]["alpha"] > 0.4  # the sample's 10 Hz rhythm dominates
    assert set(reply["band_power"]["per_channel"]) == set(samples.CH_NAMES)
    assert reply["window"] == {"start": 1000.0, "end": 1004.0}
    assert reply["baseline"] == {"ready": False, "windows": 1, "needed": 10}
    assert reply["score_basis"] == "prior"


def test_streaming_reports_buffering_then_partial_then_full_windows():
    backend = make_backend()
    x = samples.synthetic_eeg_uv(seconds=6.0)
    replies = stream(backend, x)
    buffered = [r["buffered_s"] for r in replies]
    assert buffered == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.0, 4.0, 4.0, 4.0]
    assert [r["analyzed"] for r in replies] == [False] * 3 + [True] * 9
    assert [r["window_full"] for r in replies] == [False] * 7 + [True] * 5
    assert replies[0]["prediction"] is None and replies[0]["fatigue_level"] is None
    assert "buffering" in replies[0]["warnings"][0]
    # shorter window -> lower confidence
    assert replies[3]["confidence"] == pytest.approx(replies[-1]["confidence"] * 0.5, rel=1e-3)
    # baseline windows are taken at most once per baseline_hop_s of signal
    assert [r["baseline"]["windows"] for r in replies[7:]] == [1, 1, 2, 2, 3]


def test_baseline_completes_and_z_scores_appear():
    backend = make_backend(baseline_windows=3)
    replies = stream(backend, samples.synthetic_eeg_uv(seconds=8.0))
    last = replies[-1]
    assert last["baseline"]["ready"] and last["score_basis"] == "baseline"
    assert set(last["z_scores"]) == {"theta_beta", "alpha_beta", "theta_alpha_beta", "theta_alpha_alpha_beta"}
    assert last["fatigue_level"] == "alert"  # same signal as the baseline


def test_sfreq_change_is_an_error_by_default_and_reset_fixes_it():
    backend = make_backend()
    x = samples.synthetic_eeg_uv(seconds=1.0)
    backend.process_inference(chunk_request(x))
    with pytest.raises(BadRequestError, match="sfreq changed from 128 to 256"):
        backend.process_inference(chunk_request(x, sfreq=256.0))
    with pytest.raises(BadRequestError, match="ch_names changed"):
        backend.process_inference(chunk_request(x[:3]))
    # the session is untouched by the refused chunks
    assert backend.process_inference(chunk_request(x))["samples_received"] == 256
    data = chunk_request(x, sfreq=256.0)
    data["reset_session"] = True
    reply = backend.process_inference(data)
    assert reply["samples_received"] == 128 and reply["sfreq"] == 256.0
    assert "session reset on request" in reply["warnings"]


def test_sfreq_change_resets_with_a_warning_when_configured():
    backend = make_backend(on_stream_change="reset")
    x = samples.synthetic_eeg_uv(seconds=1.0)
    backend.process_inference(chunk_request(x))
    reply = backend.process_inference(chunk_request(x, sfreq=256.0))
    assert reply["samples_received"] == 128
    assert any("sfreq changed" in w for w in reply["warnings"])


def test_timestamp_gap_clears_the_window():
    backend = make_backend()
    x = samples.synthetic_eeg_uv(seconds=1.0)
    backend.process_inference(chunk_request(x, timestamp=0.0))
    assert backend.process_inference(chunk_request(x, timestamp=1.0))["buffered_s"] == 2.0
    reply = backend.process_inference(chunk_request(x, timestamp=10.0))
    assert reply["buffered_s"] == 1.0 and "window buffer cleared" in reply["warnings"][0]


def test_sessions_are_separate():
    backend = make_backend()
    x = samples.synthetic_eeg_uv(seconds=1.0)
    backend.process_inference(chunk_request(x, session="a"))
    backend.process_inference(chunk_request(x, session="a"))
    assert backend.process_inference(chunk_request(x, session="b"))["buffered_s"] == 1.0


def test_session_store_bounds_and_ttl():
    now = [0.0]
    settings = EEGSettings(max_sessions=3, max_sessions_per_owner=2, session_ttl_s=10.0)
    sessions = StreamSessions(settings, clock=lambda: now[0])
    backend = make_backend()
    x = samples.synthetic_eeg_uv(seconds=0.5)

    def chunk(session, owner="local"):
        return parse_request(RequestData(chunk_request(x, session=session), owner=owner), settings)

    sessions.acquire(chunk("a"))
    sessions.acquire(chunk("b"))
    sessions.acquire(chunk("a"))  # a is now the owner's most recently used
    sessions.acquire(chunk("c"))  # over the owner's quota of 2: its least recently used (b) goes
    assert ("local", "a") in sessions and ("local", "c") in sessions and ("local", "b") not in sessions
    sessions.acquire(chunk("a", owner="other"))
    with pytest.raises(ProtocolError) as info:  # 3 sessions: full; nobody else's session is evicted
        sessions.acquire(chunk("z", owner="third"))
    assert info.value.code == ErrorCode.OVERLOADED and len(sessions) == 3
    now[0] = 5.0
    sessions.acquire(chunk("a"))
    now[0] = 12.0
    sessions.acquire(chunk("d", owner="third"))  # c and other's a idle 12 s > ttl: dropped; a idle 7 s: kept
    assert ("local", "c") not in sessions and ("other", "a") not in sessions
    assert ("local", "a") in sessions and ("third", "d") in sessions
    assert len(sessions) == 2
    backend.process_inference(chunk_request(x))
    backend.cleanup()
    assert len(backend.sessions) == 0


def test_concurrent_requests_on_one_session_lose_no_samples():
    backend = make_backend(window_s=8.0)
    x = samples.synthetic_eeg_uv(seconds=0.25)
    errors = []

    def worker():
        try:
            for _ in range(8):
                backend.process_inference(chunk_request(x, session="shared"))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    final = backend.process_inference(chunk_request(x, session="shared"))
    assert final["samples_received"] == 33 * 32


def test_window_with_every_channel_bad_is_answered_without_a_score():
    backend = make_backend()
    flat = np.zeros((4, 512))
    reply = backend.process_inference(chunk_request(flat))
    assert reply["analyzed"] and reply["prediction"] is None and reply["confidence"] == 0.0
    assert sorted(reply["bad_channels"]) == sorted(samples.CH_NAMES[:4])
    assert any("no usable channel" in w for w in reply["warnings"])
    json.dumps(reply, allow_nan=False)
