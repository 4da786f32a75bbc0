"""The fused state: table-driven cases on replies shaped like the real services' replies."""

from __future__ import annotations

import json
import math

import pytest

from vigil_main_backend.fusion import RULE, fuse


def fatigue(score, confidence, level="alert"):
    # The keys of vigil_fatigue.analyzer's reply that fusion reads, plus a few it must ignore.
    return {"prediction": score, "confidence": confidence, "fatigue_level": level, "face_detected": True, "ear": 0.3}


def eeg(score, confidence, basis="baseline", z=0.0):
    return {"prediction": score, "confidence": confidence, "score_basis": basis, "drowsiness_z": z, "analyzed": True}


def emotion(arousal, confidence, label="neutral", face=True):
    smoothed = {"label": label, "confidence": confidence, "arousal": arousal, "valence": 0.0}
    return {
        "prediction": label if face else None,
        "face_detected": face,
        "arousal": arousal if face else None,
        "confidence": confidence if face else None,
        "smoothed": smoothed,
    }


EEG_BUFFERING = {"prediction": None, "confidence": 0.0, "score_basis": None, "analyzed": False}
UNAVAILABLE = {"code": "unavailable", "error": "backend 'eeg' is not connected"}

# (label, results, errors, expected: score (None or approx), level, confidence range, statuses)
CASES = [
    (
        "all present, agreeing alert",
        {"fatigue": fatigue(0.1, 1.0), "eeg": eeg(0.1, 1.0), "emotion": emotion(0.8, 1.0)},
        {},
        {"score": (0.08, 0.13), "level": "alert", "confidence": (0.85, 1.0)},
        {"fatigue": "used", "eeg": "used", "emotion": "used"},
    ),
    (
        "all present, agreeing very drowsy",
        {"fatigue": fatigue(0.85, 1.0, "very_drowsy"), "eeg": eeg(0.8, 1.0), "emotion": emotion(-0.27, 0.9, "sad")},
        {},
        {"score": (0.75, 0.85), "level": "very_drowsy", "confidence": (0.85, 1.0)},
        {"fatigue": "used", "eeg": "used", "emotion": "used"},
    ),
    (
        "eeg not sent: same score, lower confidence",
        {"fatigue": fatigue(0.1, 1.0), "emotion": emotion(0.8, 1.0)},
        {},
        {"score": (0.08, 0.13), "level": "alert", "confidence": (0.4, 0.55)},
        {"fatigue": "used", "eeg": "missing", "emotion": "used"},
    ),
    (
        "eeg backend down: reported as an error, no weight",
        {"fatigue": fatigue(0.5, 1.0, "drowsy"), "emotion": emotion(0.0, 1.0)},
        {"eeg": UNAVAILABLE},
        {"score": (0.49, 0.51), "level": "drowsy", "confidence": (0.4, 0.55)},
        {"fatigue": "used", "eeg": "error", "emotion": "used"},
    ),
    (
        "conflicting: eyes say very drowsy, EEG says alert",
        {"fatigue": fatigue(0.9, 1.0, "very_drowsy"), "eeg": eeg(0.1, 1.0), "emotion": emotion(0.0, 1.0)},
        {},
        {"score": (0.45, 0.55), "level": "drowsy", "confidence": (0.3, 0.7)},
        {"fatigue": "used", "eeg": "used", "emotion": "used"},
    ),
    (
        "EEG still buffering: no estimate yet",
        {"fatigue": fatigue(0.2, 0.5), "eeg": EEG_BUFFERING, "emotion": emotion(0.5, 0.8)},
        {},
        {"score": (0.19, 0.27), "level": "alert", "confidence": (0.1, 0.35)},
        {"fatigue": "used", "eeg": "no_estimate", "emotion": "used"},
    ),
    (
        "no face for emotion, fatigue only",
        {"fatigue": fatigue(0.3, 0.8), "emotion": emotion(None, None, face=False)},
        {},
        {"score": (0.299, 0.301), "level": "alert", "confidence": (0.3, 0.4)},
        {"fatigue": "used", "eeg": "missing", "emotion": "no_estimate"},
    ),
    (
        "emotion alone: a weak cue, so a very low confidence",
        {"emotion": emotion(-0.27, 1.0, "sad")},
        {"fatigue": {"code": "timeout", "error": "no reply within 5 s"}},
        {"score": (0.63, 0.64), "level": "drowsy", "confidence": (0.0, 0.08)},
        {"fatigue": "error", "eeg": "missing", "emotion": "used"},
    ),
    (
        "all missing",
        {},
        {"fatigue": UNAVAILABLE, "emotion": UNAVAILABLE, "eeg": UNAVAILABLE},
        {"score": None, "level": "unknown", "confidence": (0.0, 0.0)},
        {"fatigue": "error", "eeg": "error", "emotion": "error"},
    ),
    (
        "hostile values never raise: NaN, strings, booleans, wrong types",
        {
            "fatigue": {"prediction": float("nan"), "confidence": 1.0},
            "eeg": {"prediction": "0.5", "confidence": True},
            "emotion": {"face_detected": True, "smoothed": "x", "arousal": [1], "confidence": 0.5},
        },
        {"spare": "not a dict"},
        {"score": None, "level": "unknown", "confidence": (0.0, 0.0)},
        {"fatigue": "no_estimate", "eeg": "no_estimate", "emotion": "no_estimate"},
    ),
    (
        "out-of-range inputs are clipped to 0..1",
        {"fatigue": fatigue(1.7, 3.0, "very_drowsy")},
        {},
        {"score": (1.0, 1.0), "level": "very_drowsy", "confidence": (0.46, 0.47)},
        {"fatigue": "used", "eeg": "missing", "emotion": "missing"},
    ),
]


@pytest.mark.parametrize(("label", "results", "errors", "expected", "statuses"), CASES, ids=[c[0] for c in CASES])
def test_fusion_table(label, results, errors, expected, statuses):
    fused = fuse(results, errors)
    json.dumps(fused, allow_nan=False)  # always valid JSON
    if expected["score"] is None:
        assert fused["score"] is None
    else:
        lo, hi = expected["score"]
        assert lo <= fused["score"] <= hi, fused
    assert fused["level"] == expected["level"], fused
    lo, hi = expected["confidence"]
    assert lo <= fused["confidence"] <= hi, fused
    assert {c["modality"]: c["status"] for c in fused["contributions"]} == statuses
    assert fused["rule"] == RULE
    used = [c for c in fused["contributions"] if c["status"] == "used"]
    if used:
        assert math.isclose(sum(c["share"] for c in used), 1.0, abs_tol=1e-3)
    for c in fused["contributions"]:
        assert c["detail"], c  # every modality says why it counted or not


def test_missing_modality_lowers_confidence_not_score():
    both = fuse({"fatigue": fatigue(0.6, 0.9, "drowsy"), "eeg": eeg(0.6, 0.9)}, {})
    one = fuse({"fatigue": fatigue(0.6, 0.9, "drowsy")}, {"eeg": UNAVAILABLE})
    assert both["score"] == one["score"] == 0.6
    assert one["confidence"] < both["confidence"]


def test_low_confidence_modality_lowers_confidence_and_weighs_less():
    sure = fuse({"fatigue": fatigue(0.8, 1.0, "very_drowsy"), "eeg": eeg(0.2, 1.0)}, {})
    unsure_eeg = fuse({"fatigue": fatigue(0.8, 1.0, "very_drowsy"), "eeg": eeg(0.2, 0.1, basis="prior")}, {})
    assert unsure_eeg["score"] > sure["score"]  # the unsure EEG pulls the score less
    assert unsure_eeg["coverage"] < sure["coverage"]
    shares = {c["modality"]: c["share"] for c in unsure_eeg["contributions"]}
    assert shares["fatigue"] > 0.9 and shares["eeg"] < 0.1


def test_conflict_lowers_confidence_relative_to_agreement():
    agree = fuse({"fatigue": fatigue(0.5, 1.0), "eeg": eeg(0.5, 1.0)}, {})
    conflict = fuse({"fatigue": fatigue(0.9, 1.0), "eeg": eeg(0.1, 1.0)}, {})
    assert agree["score"] == pytest.approx(conflict["score"], abs=1e-6)
    assert agree["agreement"] == 1.0 and conflict["agreement"] == pytest.approx(0.6, abs=1e-6)
    assert conflict["confidence"] < agree["confidence"]
