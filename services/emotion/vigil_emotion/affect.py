"""Valence and arousal estimates from expression-class probabilities.

Each basic-expression class is placed at its pleasure (valence) and arousal coordinates from
Russell & Mehrabian (1977), "Evidence for a three-factor theory of emotions", J. Research in
Personality 11:273-294, who had emotion terms rated on scales from -1 to +1: happy (0.81, 0.51),
angry (-0.51, 0.59), disgust (-0.60, 0.35), fearful (-0.64, 0.60), sad (-0.63, -0.27),
surprised (0.40, 0.67). "Neutral" is the origin (no pleasure or displeasure, no activation).
The estimate is the expectation of those coordinates under the classifier's probabilities:
valence = sum_k p_k * v_k, arousal = sum_k p_k * a_k. It is a coarse, derived quantity (a face
that is 50 % happy / 50 % sad lands near the middle); it is not a trained valence/arousal
regressor. Models whose labels are not all in the table get no estimate (null).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# (valence, arousal) per canonical class name.
CIRCUMPLEX_COORDINATES: dict[str, tuple[float, float]] = {
    "happy": (0.81, 0.51),
    "angry": (-0.51, 0.59),
    "disgust": (-0.60, 0.35),
    "fear": (-0.64, 0.60),
    "sad": (-0.63, -0.27),
    "surprise": (0.40, 0.67),
    "neutral": (0.0, 0.0),
}

# Spellings used by common FER checkpoints (FER2013, AffectNet, RAF-DB label sets).
_ALIASES = {
    "happiness": "happy",
    "joy": "happy",
    "anger": "angry",
    "disgusted": "disgust",
    "fearful": "fear",
    "afraid": "fear",
    "sadness": "sad",
    "surprised": "surprise",
    "calm": "neutral",
}


def canonical_label(label: str) -> str | None:
    key = label.strip().lower()
    key = _ALIASES.get(key, key)
    return key if key in CIRCUMPLEX_COORDINATES else None


class AffectMapper:
    """Precomputed coordinate matrix for one label list; `None` when a label is unknown."""

    def __init__(self, labels: Sequence[str]):
        canonical = [canonical_label(label) for label in labels]
        self.supported = all(c is not None for c in canonical)
        self._coords = (
            np.array([CIRCUMPLEX_COORDINATES[c] for c in canonical], dtype=np.float64) if self.supported else None
        )

    def estimate(self, probabilities: np.ndarray) -> tuple[float, float] | None:
        if self._coords is None:
            return None
        valence, arousal = np.asarray(probabilities, dtype=np.float64) @ self._coords
        return float(valence), float(arousal)
