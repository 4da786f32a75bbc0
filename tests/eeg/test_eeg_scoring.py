"""Baseline, z-scores, fatigue level and confidence on synthetic windows with controlled spectra."""

from __future__ import annotations

import numpy as np
import pytest
from eeg.signals import sine_uv

from vigil_eeg.analysis import analyze_window
from vigil_eeg.scoring import Baseline, is_clean, score
from vigil_eeg.settings import EEGSettings

SFREQ = 128.0
NAMES = ("Fz", "Cz", "Pz", "Oz", "O1", "O2")


def _window(theta_uv: float, alpha_uv: float, beta_uv: float, seed: int, seconds: float = 4.0) -> np.ndarray:
    """Rhythms with random phases per channel plus noise: θ/α/β ratios set by the amplitudes."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in NAMES:
        row = (
            sine_uv(6.0, theta_uv, SFREQ, seconds, rng.uniform(0, 6.28))
            + sine_uv(10.0, alpha_uv, SFREQ, seconds, rng.uniform(0, 6.28))
            + sine_uv(20.0, beta_uv, SFREQ, seconds, rng.uniform(0, 6.28))
            + rng.normal(0, 2.0 + rng.uniform(0, 1.0), int(SFREQ * seconds))
        )
        rows.append(row)
    return np.array(rows)


def _baseline(settings: EEGSettings) -> Baseline:
    baseline = Baseline(settings.baseline_windows)
    for i in range(settings.baseline_windows):
        # alert: moderate theta/alpha, strong beta, slightly varying between windows
        features = analyze_window(_window(8 + i % 3, 10 + (i % 2), 12, seed=i), NAMES, SFREQ, settings)
        assert baseline.offer(features, window_end_s=4.0 + i * settings.baseline_hop_s, settings=settings)
    assert baseline.ready
    return baseline


def test_baseline_needs_spacing_and_clean_windows(settings):
    baseline = Baseline(settings.baseline_windows)
    features = analyze_window(_window(8, 10, 12, seed=1), NAMES, SFREQ, settings)
    assert baseline.offer(features, 4.0, settings)
    assert not baseline.offer(features, 4.5, settings)  # closer than baseline_hop_s
    assert baseline.offer(features, 5.0, settings)
    short = analyze_window(_window(8, 10, 12, seed=2, seconds=2.5), NAMES, SFREQ, settings)
    assert not is_clean(short, settings)
    assert not baseline.offer(short, 9.0, settings)
    bad = _window(8, 10, 12, seed=3)
    bad[:4] = 0.0  # 4 of 6 flat: below min_good_fraction
    assert not baseline.offer(analyze_window(bad, NAMES, SFREQ, settings), 10.0, settings)
    assert baseline.count == 2 and not baseline.ready


def test_alert_window_scores_alert_against_its_baseline(settings):
    baseline = _baseline(settings)
    result = score(analyze_window(_window(9, 10, 12, seed=99), NAMES, SFREQ, settings), baseline, settings)
    assert result.basis == "baseline"
    assert result.fatigue_level == "alert"
    assert result.prediction < 0.3
    assert abs(result.drowsiness_z) < settings.drowsy_z
    assert set(result.z_scores) == {"theta_beta", "alpha_beta", "theta_alpha_beta", "theta_alpha_alpha_beta"}
    assert result.confidence == pytest.approx(1.0)


def test_more_theta_and_alpha_raises_the_level(settings):
    baseline = _baseline(settings)
    levels, predictions = [], []
    for theta, alpha, beta in [(9, 10, 12), (12, 14, 10), (20, 22, 7)]:
        result = score(analyze_window(_window(theta, alpha, beta, seed=50), NAMES, SFREQ, settings), baseline, settings)
        levels.append(result.fatigue_level)
        predictions.append(result.prediction)
    assert levels[0] == "alert" and levels[-1] == "very_drowsy"
    assert predictions == sorted(predictions)
    assert 0.0 <= predictions[0] < predictions[-1] <= 1.0


def test_prior_scoring_before_the_baseline_has_lower_confidence(settings):
    empty = Baseline(settings.baseline_windows)
    alert = score(analyze_window(_window(5, 6, 15, seed=4), NAMES, SFREQ, settings), empty, settings)
    drowsy = score(analyze_window(_window(20, 25, 5, seed=4), NAMES, SFREQ, settings), empty, settings)
    assert alert.basis == drowsy.basis == "prior"
    assert alert.z_scores is None
    assert alert.confidence == pytest.approx(settings.prior_confidence_factor)
    assert alert.fatigue_level == "alert" and drowsy.fatigue_level == "very_drowsy"
    assert alert.prediction < drowsy.prediction


def test_confidence_drops_with_bad_channels_and_short_windows(settings):
    baseline = _baseline(settings)
    full = score(analyze_window(_window(9, 10, 12, seed=7), NAMES, SFREQ, settings), baseline, settings)
    with_bad = _window(9, 10, 12, seed=7)
    with_bad[0] = 0.0
    with_bad[1, 100] += 600.0
    bad = score(analyze_window(with_bad, NAMES, SFREQ, settings), baseline, settings)
    short = score(analyze_window(_window(9, 10, 12, seed=7, seconds=2.0), NAMES, SFREQ, settings), baseline, settings)
    assert bad.confidence == pytest.approx(full.confidence * 4 / 6)
    assert short.confidence == pytest.approx(full.confidence * 0.5)


def test_nothing_to_score_without_good_channels(settings):
    flat = np.zeros((len(NAMES), int(SFREQ * 4)))
    assert score(analyze_window(flat, NAMES, SFREQ, settings), Baseline(settings.baseline_windows), settings) is None
