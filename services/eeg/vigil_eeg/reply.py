"""Turn window features and score into the JSON-ready reply (plain floats, NaN -> None)."""

from __future__ import annotations

import math
from typing import Any

from .analysis import WindowFeatures
from .scoring import Baseline, Score
from .spectral import BANDS


def _num(value: float | None, digits: int = 6) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(round(value, digits)) if abs(value) >= 1e-3 else float(f"{value:.{digits}g}")


def features_reply(features: WindowFeatures) -> dict[str, Any]:
    per_channel_abs = {
        ch: {band: _num(features.band_power[band][i]) for band in BANDS} for i, ch in enumerate(features.ch_names)
    }
    per_channel_rel = {
        ch: {band: _num(features.relative_power[band][i]) for band in BANDS} for i, ch in enumerate(features.ch_names)
    }
    return {
        "band_power": {
            "unit": "uV^2",
            "mean": {band: _num(v) for band, v in features.mean_band_power.items()},
            "per_channel": per_channel_abs,
        },
        "relative_power": {
            "mean": {band: _num(v) for band, v in features.mean_relative_power.items()},
            "per_channel": per_channel_rel,
        },
        "bands_hz": {band: [lo, min(hi, features.h_freq)] for band, (lo, hi) in BANDS.items()},
        "indices": {name: _num(v) for name, v in features.indices.items()},
        "alpha_peak_hz": _num(features.alpha_peak_hz, 3),
        "bad_channels": sorted(features.bad_channels),
        "bad_channel_reasons": dict(features.bad_channels),
        "artifact_fraction": _num(features.artifact_fraction, 4),
        "montage_channels": list(features.montage_channels),
    }


def baseline_reply(baseline: Baseline) -> dict[str, Any]:
    reply: dict[str, Any] = {"ready": baseline.ready, "windows": baseline.count, "needed": baseline.needed}
    if baseline.ready:
        reply["log10_mean"] = {name: _num(m) for name, (m, _) in baseline.stats().items()}
        reply["log10_std"] = {name: _num(s) for name, (_, s) in baseline.stats().items()}
    return reply


def score_reply(result: Score | None) -> dict[str, Any]:
    if result is None:
        return {
            "fatigue_level": None,
            "prediction": None,
            "confidence": 0.0,
            "z_scores": None,
            "drowsiness_z": None,
            "score_basis": None,
        }
    return {
        "fatigue_level": result.fatigue_level,
        "prediction": _num(result.prediction, 4),
        "confidence": _num(result.confidence, 4),
        "z_scores": None if result.z_scores is None else {k: _num(v, 4) for k, v in result.z_scores.items()},
        "drowsiness_z": _num(result.drowsiness_z, 4),
        "score_basis": result.basis,
    }
