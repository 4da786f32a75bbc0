"""Fatigue score, level, confidence and reasons from session metrics."""

import pytest

from vigil_fatigue.scoring import ALERT, DROWSY, VERY_DROWSY, assess, cue_score
from vigil_fatigue.settings import FatigueSettings

S = FatigueSettings()


def metrics(**overrides):
    base = {
        "perclos": 0.02,
        "microsleep_count": 0,
        "blink_mean_duration_s": 0.15,
        "yawn_rate_per_min": 0.0,
        "nod_rate_per_min": 0.0,
        "observed_s": 60.0,
        "ear_threshold_source": "calibrated",
    }
    return {**base, **overrides}


def test_cue_score_anchors():
    assert cue_score(0.0, 0.15, 0.30) == 0.0
    assert cue_score(0.15, 0.15, 0.30) == pytest.approx(0.4)
    assert cue_score(0.30, 0.15, 0.30) == pytest.approx(0.7)
    assert cue_score(0.60, 0.15, 0.30) == pytest.approx(1.0)
    assert cue_score(5.0, 0.15, 0.30) == 1.0
    assert cue_score(1.0, 1.0, 1.0) == pytest.approx(0.7)  # equal thresholds (microsleeps)


def test_alert_subject():
    a = assess(metrics(), S)
    assert a.level == ALERT and a.score < 0.4
    assert a.reasons == ["no cue at a drowsy threshold (PERCLOS 0.02 < 0.15)"]


@pytest.mark.parametrize(
    ("overrides", "level", "reason"),
    [
        ({"perclos": 0.2}, DROWSY, "PERCLOS 0.20 ≥ 0.15 (drowsy)"),
        ({"perclos": 0.32}, VERY_DROWSY, "PERCLOS 0.32 ≥ 0.30 (very drowsy)"),
        ({"microsleep_count": 1}, VERY_DROWSY, "microsleeps 1 ≥ 1 (very drowsy)"),
        ({"blink_mean_duration_s": 0.33}, DROWSY, "mean blink duration (s) 0.33 ≥ 0.30 (drowsy)"),
        ({"yawn_rate_per_min": 2.0}, DROWSY, "yawns/min 2.0 ≥ 2.0 (drowsy)"),
        ({"nod_rate_per_min": 3.0}, VERY_DROWSY, "nods/min 3.0 ≥ 3.0 (very drowsy)"),
    ],
)
def test_each_cue_drives_the_level_and_is_named(overrides, level, reason):
    a = assess(metrics(**overrides), S)
    assert a.level == level
    assert a.reasons == [reason]


def test_strongest_cue_sets_the_score_and_all_are_reported():
    a = assess(metrics(perclos=0.2, microsleep_count=2), S)
    assert a.level == VERY_DROWSY
    assert a.score == pytest.approx(max(a.cue_scores.values()))
    assert len(a.reasons) == 2


def test_unmeasurable_cues_are_skipped():
    a = assess(metrics(perclos=None, blink_mean_duration_s=None, yawn_rate_per_min=None, nod_rate_per_min=None), S)
    assert set(a.cue_scores) == {"microsleep_count"}
    assert a.level == ALERT


def test_confidence_grows_with_evidence_and_calibration():
    assert assess(metrics(observed_s=0.0), S).confidence == 0.0
    assert assess(metrics(observed_s=15.0), S).confidence == pytest.approx(0.5)
    assert assess(metrics(observed_s=60.0), S).confidence == 1.0
    assert assess(metrics(observed_s=60.0, ear_threshold_source="default"), S).confidence == pytest.approx(0.8)
