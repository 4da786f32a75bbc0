"""JSON shapes of the reply (plain floats and lists only)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .affect import AffectMapper
from .analyzer import FaceExpression, FrameAnalysis
from .smoothing import SmoothedResult

PROBABILITY_DIGITS = 6


def class_scores(labels: Sequence[str], probabilities: np.ndarray, affect: AffectMapper) -> dict[str, Any]:
    """label, confidence, probabilities per class, valence/arousal (null when not derivable)."""
    best = int(np.argmax(probabilities))
    estimate = affect.estimate(probabilities)
    return {
        "label": labels[best],
        "confidence": round(float(probabilities[best]), PROBABILITY_DIGITS),
        "probabilities": {
            label: round(float(p), PROBABILITY_DIGITS) for label, p in zip(labels, probabilities, strict=True)
        },
        "valence": None if estimate is None else round(estimate[0], 4),
        "arousal": None if estimate is None else round(estimate[1], 4),
    }


def face_entry(labels: Sequence[str], face: FaceExpression, affect: AffectMapper) -> dict[str, Any]:
    return {"box": face.box.as_dict(), **class_scores(labels, face.probabilities, affect)}


def build_reply(
    labels: Sequence[str],
    analysis: FrameAnalysis,
    smoothed: SmoothedResult | None,
    affect: AffectMapper,
    *,
    session_id: str,
    timestamp: float | None,
    image_shape: tuple[int, ...],
    smoothing_window: int,
) -> dict[str, Any]:
    faces = [face_entry(labels, face, affect) for face in analysis.faces]
    primary = faces[0] if faces else None
    reply: dict[str, Any] = {
        # Seed keys: the primary (largest) face's label and probability; null when no face.
        "prediction": primary["label"] if primary else None,
        "confidence": primary["confidence"] if primary else None,
        "probabilities": primary["probabilities"] if primary else None,
        "valence": primary["valence"] if primary else None,
        "arousal": primary["arousal"] if primary else None,
        "face_detected": primary is not None,
        "primary_face": 0 if primary else None,
        "faces": faces,
        "faces_detected": analysis.faces_detected,
        "smoothed": None,
        "session_id": session_id,
        "timestamp": timestamp,
        "image_size": {"width": int(image_shape[1]), "height": int(image_shape[0])},
        "labels": list(labels),
    }
    if smoothed is not None:
        reply["smoothed"] = {
            **class_scores(labels, smoothed.probabilities, affect),
            "frames": smoothed.frames,
            "window": smoothing_window,
            "restarted": smoothed.restarted,  # this frame began a new average (reset, gap, first face)
            "updated": primary is not None,  # false: no face in this frame, the average is carried over
        }
    return reply
