"""One person-level fatigue estimate from the modalities an `analyze` request reached.

Decision-level fusion (Kittler et al. 1998, "On combining classifiers", IEEE TPAMI 20(3): the
weighted sum rule): every modality reports a drowsiness score on 0..1 and a confidence; the fused
score is their mean weighted by reliability x confidence, so a missing or unsure modality simply
carries no weight in the score. What it does change is the fused confidence:

    coverage  = sum(w_i * c_i) / sum(w_i over every modality in MODALITIES)
    agreement = 1 - weighted standard deviation of the present scores (0.5..1)
    confidence = coverage * agreement

so the estimate from the camera alone is as high as the camera says but less certain than camera +
EEG, and two modalities that disagree give a mid score with low confidence. docs/fused-state.md
explains the weights and their sources.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Same cut-offs as the fatigue service's score (vigil_fatigue.scoring): the fused score lives on
# its scale, 0.4 at the "drowsy" threshold of a cue and 0.7 at "very drowsy".
DROWSY_SCORE = 0.4
VERY_DROWSY_SCORE = 0.7

RULE = (
    "score = sum(w*c*s)/sum(w*c) over present modalities; "
    "confidence = sum(w*c)/sum(w over fatigue, eeg, emotion) * (1 - weighted std of s); "
    "w: fatigue 1.0, eeg 1.0, emotion 0.15; emotion s = (1 - arousal)/2; "
    "level: drowsy >= 0.4, very_drowsy >= 0.7"
)


@dataclass(frozen=True)
class Estimate:
    score: float  # 0 (alert) .. 1 (very drowsy)
    confidence: float  # 0..1, the modality's own evidence measure
    detail: str  # what the score was read from, for the contribution list


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _unit(value: float) -> float:
    return min(1.0, max(0.0, value))


def _fatigue(reply: dict[str, Any]) -> Estimate | str:
    """Eye closure, blinks, yawns, nods: the fatigue service's own score and evidence-based confidence."""
    score, confidence = _number(reply.get("prediction")), _number(reply.get("confidence"))
    if score is None or confidence is None:
        return "no fatigue score in this reply"
    level = reply.get("fatigue_level")
    return Estimate(_unit(score), _unit(confidence), f"face cues, level {level}")


def _eeg(reply: dict[str, Any]) -> Estimate | str:
    """Band-power indices against the session baseline (prior before it), as the eeg service scores them."""
    score, confidence = _number(reply.get("prediction")), _number(reply.get("confidence"))
    if score is None or confidence is None:
        return "no EEG score yet (buffering or no usable channel)"
    basis = reply.get("score_basis") or "unknown basis"
    z = _number(reply.get("drowsiness_z"))
    shown = "" if z is None else f", drowsiness z {z:+.2f}"
    return Estimate(_unit(score), _unit(confidence), f"EEG indices vs {basis}{shown}")


def _emotion(reply: dict[str, Any]) -> Estimate | str:
    """Arousal as a weak cue: Russell's circumplex puts 'sleepy' at arousal -1 and 'alert' at +1,
    so the cue is (1 - arousal) / 2. The smoothed estimate is preferred (less frame jitter)."""
    source = reply.get("smoothed") if isinstance(reply.get("smoothed"), dict) else reply
    if reply.get("face_detected") is False:
        return "no face in this frame"
    arousal, confidence = _number(source.get("arousal")), _number(source.get("confidence"))
    if arousal is None or confidence is None:
        return "no arousal estimate in this reply"
    label = source.get("label") or reply.get("prediction")
    return Estimate(_unit((1.0 - arousal) / 2.0), _unit(confidence), f"arousal {arousal:+.2f} ({label})")


@dataclass(frozen=True)
class Modality:
    name: str
    weight: float  # reliability relative to the others (see docs/fused-state.md)
    read: Callable[[dict[str, Any]], Estimate | str]


MODALITIES: tuple[Modality, ...] = (
    Modality("fatigue", 1.0, _fatigue),
    Modality("eeg", 1.0, _eeg),
    Modality("emotion", 0.15, _emotion),
)
TOTAL_WEIGHT = sum(m.weight for m in MODALITIES)


def level_for(score: float) -> str:
    if score >= VERY_DROWSY_SCORE:
        return "very_drowsy"
    if score >= DROWSY_SCORE:
        return "drowsy"
    return "alert"


def fuse(results: dict[str, dict], errors: dict[str, dict]) -> dict[str, Any]:
    """The fused state of one `analyze` reply (its `results` and `errors` per backend)."""
    contributions: list[dict[str, Any]] = []
    present: list[tuple[Modality, Estimate]] = []
    for modality in MODALITIES:
        entry: dict[str, Any] = {"modality": modality.name, "weight": modality.weight}
        reply = results.get(modality.name) if isinstance(results, dict) else None
        error = errors.get(modality.name) if isinstance(errors, dict) else None
        if isinstance(reply, dict):
            estimate = modality.read(reply)
            if isinstance(estimate, Estimate):
                present.append((modality, estimate))
                entry.update(
                    status="used",
                    score=round(estimate.score, 4),
                    confidence=round(estimate.confidence, 4),
                    detail=estimate.detail,
                )
            else:
                entry.update(status="no_estimate", detail=estimate)
        elif isinstance(error, dict):
            entry.update(status="error", detail=f"{error.get('code', 'error')}: {error.get('error', '')}".strip())
        else:
            entry.update(status="missing", detail="not in this request")
        contributions.append(entry)

    evidence = sum(m.weight * e.confidence for m, e in present)
    if evidence <= 0.0:
        for entry in contributions:
            entry["share"] = 0.0
        return {"score": None, "level": "unknown", "confidence": 0.0, "contributions": contributions, "rule": RULE}

    score = sum(m.weight * e.confidence * e.score for m, e in present) / evidence
    spread = math.sqrt(sum(m.weight * e.confidence * (e.score - score) ** 2 for m, e in present) / evidence)
    coverage = evidence / TOTAL_WEIGHT
    confidence = coverage * (1.0 - spread)
    shares = {m.name: m.weight * e.confidence / evidence for m, e in present}
    for entry in contributions:
        entry["share"] = round(shares.get(entry["modality"], 0.0), 4)
    return {
        "score": round(score, 4),
        "level": level_for(score),
        "confidence": round(confidence, 4),
        "coverage": round(coverage, 4),
        "agreement": round(1.0 - spread, 4),
        "contributions": contributions,
        "rule": RULE,
    }
