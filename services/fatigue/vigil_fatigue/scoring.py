"""Session metrics -> fatigue score (0..1), level and the reasons behind it.

Each cue maps onto a common scale: 0 at zero, 0.4 at its "drowsy" threshold, 0.7 at its "very
drowsy" threshold, 1.0 at twice that. The score is the strongest cue (one clear sign such as a
microsleep is enough; weak signs do not add up to a false alarm). Thresholds live in settings.py
with their sources.
"""

from __future__ import annotations

from dataclasses import dataclass

from .settings import FatigueSettings

ALERT = "alert"
DROWSY = "drowsy"
VERY_DROWSY = "very_drowsy"

DROWSY_SCORE = 0.4
VERY_DROWSY_SCORE = 0.7


@dataclass(frozen=True)
class Cue:
    name: str  # metrics key
    label: str  # how reasons name it
    drowsy: float
    very_drowsy: float
    fmt: str


def cues(s: FatigueSettings) -> tuple[Cue, ...]:
    return (
        Cue("perclos", "PERCLOS", s.perclos_drowsy, s.perclos_very_drowsy, "{:.2f}"),
        Cue("microsleep_count", "microsleeps", s.microsleeps_drowsy, s.microsleeps_very_drowsy, "{:.0f}"),
        Cue(
            "blink_mean_duration_s",
            "mean blink duration (s)",
            s.blink_duration_drowsy_s,
            s.blink_duration_very_drowsy_s,
            "{:.2f}",
        ),
        Cue("yawn_rate_per_min", "yawns/min", s.yawns_per_min_drowsy, s.yawns_per_min_very_drowsy, "{:.1f}"),
        Cue("nod_rate_per_min", "nods/min", s.nods_per_min_drowsy, s.nods_per_min_very_drowsy, "{:.1f}"),
    )


def cue_score(value: float, drowsy: float, very_drowsy: float) -> float:
    if value >= very_drowsy:
        return min(1.0, VERY_DROWSY_SCORE + (1.0 - VERY_DROWSY_SCORE) * (value - very_drowsy) / very_drowsy)
    if value >= drowsy:
        return DROWSY_SCORE + (VERY_DROWSY_SCORE - DROWSY_SCORE) * (value - drowsy) / (very_drowsy - drowsy)
    return DROWSY_SCORE * max(value, 0.0) / drowsy


def level_for(score: float) -> str:
    if score >= VERY_DROWSY_SCORE:
        return VERY_DROWSY
    if score >= DROWSY_SCORE:
        return DROWSY
    return ALERT


@dataclass(frozen=True)
class FatigueAssessment:
    score: float
    level: str
    confidence: float
    reasons: list[str]
    cue_scores: dict[str, float]


def assess(metrics: dict, settings: FatigueSettings) -> FatigueAssessment:
    cue_scores: dict[str, float] = {}
    reasons: list[str] = []
    for cue in cues(settings):
        value = metrics.get(cue.name)
        if value is None:  # not measurable yet (no face time, too short for a rate, no blinks)
            continue
        cue_scores[cue.name] = round(cue_score(value, cue.drowsy, cue.very_drowsy), 4)
        shown = cue.fmt.format(value)
        if value >= cue.very_drowsy:
            reasons.append(f"{cue.label} {shown} ≥ {cue.fmt.format(cue.very_drowsy)} (very drowsy)")
        elif value >= cue.drowsy:
            reasons.append(f"{cue.label} {shown} ≥ {cue.fmt.format(cue.drowsy)} (drowsy)")
    score = max(cue_scores.values(), default=0.0)
    level = level_for(score)
    if not reasons:
        perclos = metrics.get("perclos")
        reasons.append(
            "no cue at a drowsy threshold"
            + ("" if perclos is None else f" (PERCLOS {perclos:.2f} < {settings.perclos_drowsy:.2f})")
        )
    return FatigueAssessment(score, level, confidence(metrics, settings), reasons, cue_scores)


def confidence(metrics: dict, settings: FatigueSettings) -> float:
    """How much evidence stands behind the score (not a probability): face time observed in the
    window relative to `confidence_full_evidence_s`, discounted before the eye threshold is
    calibrated to this subject."""
    evidence = min(1.0, metrics["observed_s"] / settings.confidence_full_evidence_s)
    calibrated = 1.0 if metrics["ear_threshold_source"] == "calibrated" else 0.8
    return round(evidence * calibrated, 4)
