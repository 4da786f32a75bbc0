"""One window in, features out: preprocessing + spectrum + indices. Stateless (no session)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import spectral
from .preprocessing import channel_info, design_filters, preprocess
from .settings import EEGSettings


@dataclass
class WindowFeatures:
    ch_names: tuple[str, ...]
    sfreq: float
    n_samples: int
    h_freq: float
    band_power: dict[str, np.ndarray]  # µV² per channel
    relative_power: dict[str, np.ndarray]
    mean_band_power: dict[str, float]  # over good channels (NaN when none is good)
    mean_relative_power: dict[str, float]
    indices: dict[str, float]
    alpha_peak_hz: float | None
    bad_channels: dict[str, str]
    good_mask: np.ndarray
    artifact_fraction: float
    montage_channels: tuple[str, ...]

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.sfreq

    @property
    def good_fraction(self) -> float:
        return float(self.good_mask.mean())

    @property
    def usable(self) -> bool:
        return bool(self.good_mask.any()) and all(math.isfinite(v) for v in self.indices.values())


def analyze_window(
    window_uv: np.ndarray, ch_names: tuple[str, ...], sfreq: float, settings: EEGSettings
) -> WindowFeatures:
    filters = design_filters(sfreq, settings)
    _, montage_channels = channel_info(ch_names, sfreq)
    clean = preprocess(window_uv, ch_names, filters, settings)
    spectrum = spectral.welch_psd(clean.data_uv, sfreq, filters.l_freq, filters.h_freq, settings.welch_segment_s)
    absolute = spectral.band_powers(spectrum, filters.h_freq)
    relative = spectral.relative_powers(absolute)
    good = clean.good_mask
    if good.any():
        mean_abs = {name: float(p[good].mean()) for name, p in absolute.items()}
        mean_rel = {name: float(p[good].mean()) for name, p in relative.items()}
        peak = spectral.alpha_peak_frequency(spectrum.freqs, spectrum.psd[good].mean(axis=0))
    else:
        mean_abs = {name: float("nan") for name in absolute}
        mean_rel = dict(mean_abs)
        peak = None
    return WindowFeatures(
        ch_names=ch_names,
        sfreq=sfreq,
        n_samples=window_uv.shape[1],
        h_freq=filters.h_freq,
        band_power=absolute,
        relative_power=relative,
        mean_band_power=mean_abs,
        mean_relative_power=mean_rel,
        indices=spectral.drowsiness_indices(mean_abs),
        alpha_peak_hz=peak,
        bad_channels=clean.bad_channels,
        good_mask=good,
        artifact_fraction=clean.artifact_fraction,
        montage_channels=montage_channels,
    )
