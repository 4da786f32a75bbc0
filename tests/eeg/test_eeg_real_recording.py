"""The real 16 s, 14-channel Emotiv recording (PhyAAt, shipped in spkit) streamed in 0.5 s chunks."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from eeg import samples

from vigil_eeg.analysis import analyze_window
from vigil_eeg.backend import EEGBackend
from vigil_eeg.settings import EEGSettings

SFREQ = 128.0
CHUNK = 64  # 0.5 s


@pytest.fixture(scope="module")
def recording(emotiv_recording):
    x, names = emotiv_recording
    assert x.shape == (14, 2048) and len(names) == 14
    return x.astype(np.float32).astype(np.float64), names  # what survives the float32 wire format


@pytest.fixture(scope="module")
def streamed(recording):
    x, names = recording
    backend = EEGBackend("127.0.0.1", 0, settings=EEGSettings())
    backend.initialize_model()
    replies = []
    for start in range(0, x.shape[1], CHUNK):
        eeg = samples.eeg_payload_b64(x[:, start : start + CHUNK], names)
        replies.append(backend.process_inference({"session_id": "emotiv", "timestamp": start / SFREQ, "eeg": eeg}))
    return replies


def test_stream_never_fails_and_replies_are_strict_json(streamed):
    assert len(streamed) == 32
    for reply in streamed:
        json.dumps(reply, allow_nan=False)
    assert [r["window_full"] for r in streamed].index(True) == 7  # 8 chunks = 4 s


def test_band_powers_are_finite_and_relative_powers_sensible(streamed):
    analysed = [r for r in streamed if r["analyzed"]]
    assert len(analysed) == 29
    scored = [r for r in analysed if r["prediction"] is not None]
    assert len(scored) >= 10
    for reply in scored:
        rel = reply["relative_power"]["mean"]
        assert sum(rel.values()) == pytest.approx(1.0, abs=1e-4)
        assert all(0.0 <= v <= 1.0 for v in rel.values())
        assert all(math.isfinite(v) and v > 0 for v in reply["band_power"]["mean"].values())
        # Resting EEG: delta+theta+alpha carry most power, gamma little.
        assert rel["gamma"] < 0.1
        assert rel["delta"] + rel["theta"] + rel["alpha"] > 0.6
        assert all(v > 0 for v in reply["indices"].values())
        assert reply["fatigue_level"] in ("alert", "drowsy", "very_drowsy")
    for reply in analysed:
        for channel in reply["band_power"]["per_channel"].values():
            assert all(v is not None and math.isfinite(v) for v in channel.values())
    # The recording has a clear alpha rhythm near 10 Hz in its first seconds.
    peaks = [r["alpha_peak_hz"] for r in scored if r["alpha_peak_hz"] is not None]
    assert peaks and all(8.5 < p < 12.0 for p in peaks)


def test_large_artifact_is_detected(streamed):
    # Around 7-10 s every channel swings far beyond ±150 µV (eye/movement artifact in the recording).
    worst = max(streamed, key=lambda r: r.get("artifact_fraction") or 0.0)
    assert worst["artifact_fraction"] > 0.05
    assert len(worst["bad_channels"]) == 14
    assert worst["prediction"] is None and worst["confidence"] == 0.0


def test_chunked_streaming_equals_the_window_at_once(recording, streamed):
    x, names = recording
    last = streamed[-1]
    direct = analyze_window(x[:, -512:], tuple(names), SFREQ, EEGSettings())
    for band in ("delta", "theta", "alpha", "beta", "gamma"):
        for i, name in enumerate(names):
            assert last["band_power"]["per_channel"][name][band] == pytest.approx(direct.band_power[band][i], rel=1e-5)
    assert last["bad_channels"] == sorted(direct.bad_channels)

    # and the same 4 s sent as one chunk to a fresh session
    backend = EEGBackend("127.0.0.1", 0, settings=EEGSettings())
    once = backend.process_inference({"session_id": "once", "eeg": samples.eeg_payload_b64(x[:, -512:], names)})
    assert once["band_power"] == last["band_power"]
    assert once["relative_power"] == last["relative_power"]
    assert once["indices"] == last["indices"]
    assert once["alpha_peak_hz"] == last["alpha_peak_hz"]
