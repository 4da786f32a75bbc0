"""Per-session baseline of the drowsiness indices, z-scores against it, and the fatigue level."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .analysis import WindowFeatures
from .settings import EEGSettings
from .spectral import INDEX_NAMES

LEVELS = ("alert", "drowsy", "very_drowsy")
# Prior z (before a baseline exists) uses this index: Jap et al. 2009 found (θ+α)/β the strongest.
PRIOR_INDEX = "theta_alpha_beta"
MIN_STD = 0.02  # log10 units (~5 %): a very steady baseline must not turn noise into huge z-scores


@dataclass
class Baseline:
    """log10 of each index over the session's first clean windows, spaced baseline_hop_s apart."""

    needed: int
    values: dict[str, list[float]] = field(default_factory=lambda: {name: [] for name in INDEX_NAMES})
    last_end_s: float | None = None  # stream time (s) of the newest window taken

    @property
    def count(self) -> int:
        return len(self.values[INDEX_NAMES[0]])

    @property
    def ready(self) -> bool:
        return self.count >= self.needed

    def offer(self, features: WindowFeatures, window_end_s: float, settings: EEGSettings) -> bool:
        """Take the window if the baseline still needs it and it is clean; True if taken."""
        if self.ready or not is_clean(features, settings):
            return False
        if self.last_end_s is not None and window_end_s - self.last_end_s < settings.baseline_hop_s:
            return False
        for name in INDEX_NAMES:
            self.values[name].append(math.log10(features.indices[name]))
        self.last_end_s = window_end_s
        return True

    def stats(self) -> dict[str, tuple[float, float]]:
        return {name: (float(np.mean(v)), max(float(np.std(v, ddof=1)), MIN_STD)) for name, v in self.values.items()}


def is_clean(features: WindowFeatures, settings: EEGSettings) -> bool:
    full = features.n_samples >= round(settings.window_s * features.sfreq)
    positive = all(v > 0 for v in features.indices.values())
    return full and features.usable and positive and features.good_fraction >= settings.min_good_fraction


@dataclass
class Score:
    z_scores: dict[str, float] | None  # per index, against the session baseline (None before it)
    drowsiness_z: float
    prediction: float  # 0 (alert) .. 1 (very drowsy)
    fatigue_level: str
    confidence: float
    basis: str  # "baseline" or "prior"


def score(features: WindowFeatures, baseline: Baseline, settings: EEGSettings) -> Score | None:
    """None when the window has no usable channel (nothing to score)."""
    if not features.usable or any(v <= 0 for v in features.indices.values()):
        return None
    logs = {name: math.log10(features.indices[name]) for name in INDEX_NAMES}
    if baseline.ready:
        stats = baseline.stats()
        z_scores = {name: (logs[name] - stats[name][0]) / stats[name][1] for name in INDEX_NAMES}
        drowsiness_z = float(np.mean(list(z_scores.values())))
        basis, confidence = "baseline", 1.0
    else:
        z_scores = None
        drowsiness_z = (logs[PRIOR_INDEX] - settings.prior_log_ratio_mean) / settings.prior_log_ratio_std
        basis, confidence = "prior", settings.prior_confidence_factor
    # Logistic map centred between the two thresholds: prediction crosses the drowsy threshold's
    # value smoothly and reaches ~0.73 at very_drowsy_z with the defaults (1, 2).
    centre = (settings.drowsy_z + settings.very_drowsy_z) / 2
    scale = (settings.very_drowsy_z - settings.drowsy_z) / 2
    prediction = 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, (drowsiness_z - centre) / scale))))
    if drowsiness_z >= settings.very_drowsy_z:
        level = "very_drowsy"
    elif drowsiness_z >= settings.drowsy_z:
        level = "drowsy"
    else:
        level = "alert"
    full_samples = settings.window_s * features.sfreq
    confidence *= features.good_fraction * min(1.0, features.n_samples / full_samples)
    return Score(z_scores, drowsiness_z, prediction, level, confidence, basis)
