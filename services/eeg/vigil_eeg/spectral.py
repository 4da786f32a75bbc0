"""Welch PSD (MNE), absolute/relative band powers, the Jap et al. drowsiness indices, alpha peak."""

from __future__ import annotations

from dataclasses import dataclass

import mne
import numpy as np

# Classical EEG bands in Hz (the edges); a bin at a shared edge belongs to the upper band.
BANDS: dict[str, tuple[float, float]] = {
    "delta": (1.0, 4.0),
    "theta": (4.0, 8.0),
    "alpha": (8.0, 13.0),
    "beta": (13.0, 30.0),
    "gamma": (30.0, 40.0),
}
# Jap, Lal, Fischer & Bekiaris 2009 (Expert Syst. Appl. 36:2352-2359) and Jap et al. 2011
# (Biol. Psychol. 86:230-237): all four rise as a driver fatigues.
INDEX_NAMES = ("theta_beta", "alpha_beta", "theta_alpha_beta", "theta_alpha_alpha_beta")


@dataclass
class Spectrum:
    freqs: np.ndarray
    psd: np.ndarray  # µV²/Hz, (n_channels, n_freqs)


def welch_psd(data_uv: np.ndarray, sfreq: float, fmin: float, fmax: float, segment_s: float) -> Spectrum:
    n_times = data_uv.shape[1]
    n_per_seg = min(n_times, int(round(segment_s * sfreq)))
    psd, freqs = mne.time_frequency.psd_array_welch(
        data_uv,
        sfreq,
        fmin=fmin,
        fmax=fmax,
        n_fft=n_per_seg,
        n_per_seg=n_per_seg,
        n_overlap=n_per_seg // 2,
        average="mean",
        verbose=False,
    )
    return Spectrum(freqs, psd)


def band_masks(freqs: np.ndarray, h_freq: float) -> dict[str, np.ndarray]:
    """Frequency-bin masks per band, clipped at the effective low-pass edge."""
    masks = {}
    last = list(BANDS)[-1]
    for name, (lo, hi) in BANDS.items():
        hi = min(hi, h_freq)
        upper = freqs <= hi if name == last or hi < BANDS[name][1] else freqs < hi
        masks[name] = (freqs >= lo) & upper
    return masks


def band_powers(spectrum: Spectrum, h_freq: float) -> dict[str, np.ndarray]:
    """Absolute band power per channel in µV² (PSD integrated over the band's bins)."""
    df = spectrum.freqs[1] - spectrum.freqs[0] if len(spectrum.freqs) > 1 else 1.0
    return {name: spectrum.psd[:, mask].sum(axis=1) * df for name, mask in band_masks(spectrum.freqs, h_freq).items()}


def relative_powers(absolute: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    total = sum(absolute.values())
    with np.errstate(divide="ignore", invalid="ignore"):
        return {name: np.where(total > 0, power / total, np.nan) for name, power in absolute.items()}


def drowsiness_indices(power: dict[str, float]) -> dict[str, float]:
    """θ/β, α/β, (θ+α)/β, (θ+α)/(α+β) from (mean) band powers; NaN where a denominator is 0."""
    theta, alpha, beta = power["theta"], power["alpha"], power["beta"]

    def ratio(num: float, den: float) -> float:
        return float(num / den) if den > 0 else float("nan")

    return {
        "theta_beta": ratio(theta, beta),
        "alpha_beta": ratio(alpha, beta),
        "theta_alpha_beta": ratio(theta + alpha, beta),
        "theta_alpha_alpha_beta": ratio(theta + alpha, alpha + beta),
    }


# A peak must stand this far above the straight line (log-log) between the alpha band's edges,
# i.e. above the aperiodic 1/f background: 2x (3 dB) keeps Welch noise bumps out.
MIN_PEAK_OVER_BACKGROUND = 2.0


def alpha_peak_frequency(freqs: np.ndarray, mean_psd: np.ndarray) -> float | None:
    """Frequency of the PSD maximum inside the alpha band, refined by a parabola through the peak
    bin and its neighbours; None when there is no clear peak inside the band."""
    lo, hi = BANDS["alpha"]
    idx = np.flatnonzero((freqs >= lo) & (freqs <= hi))
    if len(idx) < 3 or not (mean_psd[idx] > 0).all():
        return None
    k = idx[np.argmax(mean_psd[idx])]
    if k in (idx[0], idx[-1]):
        return None
    log_f, log_p = np.log10(freqs[[idx[0], idx[-1]]]), np.log10(mean_psd[[idx[0], idx[-1]]])
    background = log_p[0] + (np.log10(freqs[k]) - log_f[0]) * (log_p[1] - log_p[0]) / (log_f[1] - log_f[0])
    if np.log10(mean_psd[k]) - background < np.log10(MIN_PEAK_OVER_BACKGROUND):
        return None
    left, centre, right = mean_psd[k - 1], mean_psd[k], mean_psd[k + 1]
    curvature = left - 2 * centre + right
    offset = 0.5 * (left - right) / curvature if curvature < 0 else 0.0
    return float(freqs[k] + offset * (freqs[1] - freqs[0]))
