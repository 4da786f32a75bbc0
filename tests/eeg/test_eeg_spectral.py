"""Synthetic signals with known spectra through the whole window analysis (MNE filters + Welch)."""

from __future__ import annotations

import numpy as np
import pytest
from eeg.signals import sine_uv
from scipy.signal import sosfreqz

from vigil_eeg.analysis import analyze_window
from vigil_eeg.preprocessing import design_filters
from vigil_eeg.settings import EEGSettings
from vigil_eeg.spectral import BANDS

SFREQ = 256.0
NAMES4 = ("Fz", "Cz", "Pz", "Oz")


def _channels(signal: np.ndarray, n: int = 4, noise_uv: float = 0.5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return signal[None, :] + rng.normal(0.0, noise_uv, (n, signal.size))


@pytest.mark.parametrize(
    ("freq", "band"), [(2.5, "delta"), (6.0, "theta"), (10.0, "alpha"), (20.0, "beta"), (35.0, "gamma")]
)
def test_a_sine_puts_its_power_in_its_band(settings, freq, band):
    features = analyze_window(_channels(sine_uv(freq, 20.0, SFREQ, 4.0)), NAMES4, SFREQ, settings)
    assert max(features.mean_relative_power, key=features.mean_relative_power.get) == band
    assert features.mean_relative_power[band] > 0.95
    assert not features.bad_channels


@pytest.mark.parametrize("freq", [6.0, 10.0, 20.0])
def test_sine_band_power_matches_the_analytic_value(settings, freq):
    # A sine of amplitude A has power A²/2; the pass band (well inside 1-40 Hz) leaves it intact.
    amplitude = 20.0
    features = analyze_window(_channels(sine_uv(freq, amplitude, SFREQ, 4.0), noise_uv=0.0), NAMES4, SFREQ, settings)
    band = next(name for name, (lo, hi) in BANDS.items() if lo <= freq < hi)
    assert features.mean_band_power[band] == pytest.approx(amplitude**2 / 2, rel=0.05)
    total = sum(features.mean_band_power.values())
    assert total == pytest.approx(amplitude**2 / 2, rel=0.05)


def test_alpha_peak_frequency_follows_the_alpha_rhythm(settings):
    signal = sine_uv(10.5, 20.0, SFREQ, 4.0) + sine_uv(20.0, 5.0, SFREQ, 4.0)
    features = analyze_window(_channels(signal, noise_uv=2.0), NAMES4, SFREQ, settings)
    assert features.alpha_peak_hz == pytest.approx(10.5, abs=0.2)


@pytest.mark.parametrize("freq", [6.0, 20.0])
def test_no_alpha_peak_without_alpha(settings, freq):
    features = analyze_window(_channels(sine_uv(freq, 20.0, SFREQ, 4.0)), NAMES4, SFREQ, settings)
    assert features.alpha_peak_hz is None


def test_drowsiness_indices_follow_the_band_powers(settings):
    theta_heavy = sine_uv(6.0, 20.0, SFREQ, 4.0) + sine_uv(10.0, 10.0, SFREQ, 4.0) + sine_uv(20.0, 10.0, SFREQ, 4.0)
    features = analyze_window(_channels(theta_heavy, noise_uv=0.0), NAMES4, SFREQ, settings)
    # powers 200 (θ), 50 (α), 50 (β)
    assert features.indices["theta_beta"] == pytest.approx(4.0, rel=0.05)
    assert features.indices["alpha_beta"] == pytest.approx(1.0, rel=0.05)
    assert features.indices["theta_alpha_beta"] == pytest.approx(5.0, rel=0.05)
    assert features.indices["theta_alpha_alpha_beta"] == pytest.approx(2.5, rel=0.05)


def _expected_noise_band_powers(settings: EEGSettings, sigma_uv: float, sfreq: float) -> dict[str, float]:
    """White noise of variance σ² has PSD σ²/(fs/2) per Hz; the zero-phase filters (applied forward
    and backward) shape it by |H|⁴ per stage. Integrate that over each band."""
    filters = design_filters(sfreq, settings)
    freqs = np.linspace(0, sfreq / 2, 8192)
    gain = np.ones_like(freqs)
    for stage in (filters.notch, filters.highpass, filters.lowpass):
        if stage is not None:
            _, h = sosfreqz(stage["sos"], worN=freqs, fs=sfreq)
            gain *= np.abs(h) ** 4
    density = sigma_uv**2 / (sfreq / 2) * gain
    df = freqs[1] - freqs[0]
    return {name: float(density[(freqs >= lo) & (freqs < hi)].sum() * df) for name, (lo, hi) in BANDS.items()}


def test_white_noise_band_powers_match_the_analytic_values(settings):
    sigma = 10.0
    rng = np.random.default_rng(7)
    noise = rng.normal(0.0, sigma, (32, int(SFREQ * 4)))
    features = analyze_window(noise, tuple(f"E{i}" for i in range(32)), SFREQ, settings)
    expected = _expected_noise_band_powers(settings, sigma, SFREQ)
    for band, value in expected.items():
        assert features.mean_band_power[band] == pytest.approx(value, rel=0.1), band
    # Flat spectrum: inside the pass band the relative power per Hz is the same in every band.
    per_hz = {b: features.mean_relative_power[b] / (hi - lo) for b, (lo, hi) in BANDS.items()}
    inner = [per_hz["theta"], per_hz["alpha"], per_hz["beta"]]
    assert max(inner) / min(inner) < 1.15
    assert features.alpha_peak_hz is None


def test_flat_spike_and_line_noise_channels_are_flagged_and_excluded(settings):
    names = ("Fz", "Cz", "Pz", "Oz", "O1")
    t_alpha = sine_uv(10.0, 10.0, SFREQ, 4.0)
    x = _channels(t_alpha, n=5, noise_uv=1.0)
    x[1] = 3.0  # flat (a constant offset)
    x[2, 500] += 500.0  # one 500 µV spike
    x[3] += sine_uv(50.0, 100.0, SFREQ, 4.0)  # mains hum
    features = analyze_window(x, names, SFREQ, settings)
    assert set(features.bad_channels) == {"Cz", "Pz", "Oz"}
    assert features.bad_channels["Cz"].startswith("flat")
    assert features.bad_channels["Pz"].startswith("amplitude")
    assert features.bad_channels["Oz"].startswith("line noise")
    assert features.good_mask.tolist() == [True, False, False, False, True]
    assert 0 < features.artifact_fraction < 0.05
    # Averages come from the good channels only: the spike channel would add broadband power.
    clean = analyze_window(x[[0, 4]], ("Fz", "O1"), SFREQ, settings)
    assert features.mean_band_power["alpha"] == pytest.approx(clean.mean_band_power["alpha"], rel=1e-9)


def test_clean_signal_has_no_artifacts(settings):
    features = analyze_window(_channels(sine_uv(10.0, 30.0, SFREQ, 4.0)), NAMES4, SFREQ, settings)
    assert features.artifact_fraction == 0.0
    assert features.good_fraction == 1.0


def test_all_channels_bad_gives_no_averages(settings):
    x = np.full((3, int(SFREQ * 4)), 7.0)
    features = analyze_window(x, ("Fz", "Cz", "Pz"), SFREQ, settings)
    assert len(features.bad_channels) == 3
    assert not features.usable
    assert np.isnan(features.mean_band_power["alpha"])
    assert features.alpha_peak_hz is None


def test_line_noise_at_60_hz_with_a_60_hz_notch():
    settings = EEGSettings(line_freq=60.0)
    x = _channels(sine_uv(10.0, 10.0, SFREQ, 4.0) + sine_uv(60.0, 3.0, SFREQ, 4.0))
    features = analyze_window(x, NAMES4, SFREQ, settings)
    assert not features.bad_channels  # 3 µV hum is removed by the notch, not a reason to drop
    assert features.mean_relative_power["alpha"] > 0.95


def test_lowest_rate_keeps_bands_below_nyquist(settings):
    sfreq = 80.0
    filters = design_filters(sfreq, settings)
    assert filters.h_freq < 40.0 and filters.notch is None  # 50 Hz is above Nyquist at 80 Hz
    features = analyze_window(_channels(sine_uv(10.0, 20.0, sfreq, 4.0)), NAMES4, sfreq, settings)
    assert features.mean_relative_power["alpha"] > 0.95
    assert all(np.isfinite(v) for v in features.mean_band_power.values())


def test_montage_positions_for_known_names(settings):
    features = analyze_window(_channels(sine_uv(10.0, 20.0, SFREQ, 4.0)), ("Fz", "Cz", "X1", "Oz"), SFREQ, settings)
    assert features.montage_channels == ("Fz", "Cz", "Oz")


def test_average_reference_removes_a_common_signal():
    settings = EEGSettings(average_reference=True)
    common = sine_uv(20.0, 20.0, SFREQ, 4.0)
    rng = np.random.default_rng(3)
    x = common[None, :] + rng.normal(0, 3.0, (8, common.size))
    x[:4] += sine_uv(10.0, 10.0, SFREQ, 4.0)  # alpha on half the channels only
    referenced = analyze_window(x, tuple(f"E{i}" for i in range(8)), SFREQ, settings)
    plain = analyze_window(x, tuple(f"E{i}" for i in range(8)), SFREQ, EEGSettings())
    assert plain.mean_band_power["beta"] > 150
    assert referenced.mean_band_power["beta"] < 0.1 * plain.mean_band_power["beta"]
    assert referenced.mean_band_power["alpha"] > 5


@pytest.mark.parametrize(("n", "padlen"), [(1024, 405), (300, 405), (512, 21), (64, 0)])
def test_zero_phase_filter_equals_scipy_sosfiltfilt(settings, n, padlen):
    from scipy.signal import sosfiltfilt

    from vigil_eeg.preprocessing import zero_phase_filter

    filters = design_filters(SFREQ, settings)
    x = np.random.default_rng(5).normal(0, 10, (3, n)) + 50.0
    for stage in (filters.highpass, filters.lowpass, filters.notch):
        expected = sosfiltfilt(stage["sos"], x, axis=-1, padlen=min(padlen, n - 1))
        got = zero_phase_filter(stage["sos"], stage["zi"], x, padlen)
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-9)
