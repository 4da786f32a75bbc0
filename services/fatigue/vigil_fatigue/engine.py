"""The landmark engine interface: frames in, face landmarks out.

The fatigue logic (geometry, sessions, scoring) only sees `FaceLandmarks`, so another engine (e.g.
a PyTorch face-mesh model) plugs in by implementing `LandmarkEngine` with the same point topology.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Point topology every engine must produce: MediaPipe Face Mesh order, 468 points (478 with the
# 10 iris points appended). geometry.py indexes into it.
TOPOLOGY_MEDIAPIPE_468 = "mediapipe_face_mesh_468"


@dataclass(frozen=True)
class FaceLandmarks:
    """One face in one frame, in pixel coordinates of that frame."""

    points: np.ndarray  # (N, 3) float64: x, y in pixels; z in pixels (relative depth, x scale)
    box: tuple[float, float, float, float]  # x, y, width, height in pixels
    score: float | None  # face detection confidence, None if the engine has none

    @property
    def area(self) -> float:
        return self.box[2] * self.box[3]


class LandmarkEngine(abc.ABC):
    """Detects faces and their landmarks. Implementations must be safe to call from any thread."""

    name: str = ""
    topology: str = TOPOLOGY_MEDIAPIPE_468

    @abc.abstractmethod
    def detect(self, frames: Sequence[np.ndarray]) -> list[list[FaceLandmarks]]:
        """For each BGR uint8 frame (H, W, 3), the faces found in it (possibly none)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the engine's resources."""


def box_from_points(points: np.ndarray, width: int, height: int) -> tuple[float, float, float, float]:
    """Tight box around the landmarks, clipped to the frame."""
    x0 = float(np.clip(points[:, 0].min(), 0, width))
    y0 = float(np.clip(points[:, 1].min(), 0, height))
    x1 = float(np.clip(points[:, 0].max(), 0, width))
    y1 = float(np.clip(points[:, 1].max(), 0, height))
    return x0, y0, x1 - x0, y1 - y0


def box_iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0.0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0
