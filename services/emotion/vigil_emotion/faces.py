"""Face detection (OpenCV Haar cascade) and face crops prepared the way the `fer` package does.

Haar is what `fer` pairs the mini-Xception network with, so the crops the classifier sees match
the ones it was used with. Crop recipe, from fer's `FER.detect_emotions`: make the box square by
growing its shorter side, add 10 px on every side, and where that leaves the frame use a border
filled with the mean of the frame's bottom two rows (fer pads the frame by 40 px with that value
and clips the crop's top-left corner at the padded frame's edge).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

logger = logging.getLogger(__name__)

FRAME_PADDING = 40  # fer's PADDING


@dataclass(frozen=True, slots=True)
class FaceBox:
    """Detector box in frame pixels (x, y = top-left)."""

    x: int
    y: int
    width: int
    height: int
    # Haar: cascade level weight, higher = more face-like (not a probability); BlazeFace: probability.
    score: float = 0.0
    # Radians, clockwise in the image: the head's tilt (BlazeFace's eye line; Haar boxes are level).
    rotation: float = 0.0

    @property
    def area(self) -> int:
        return self.width * self.height

    def as_dict(self) -> dict[str, int]:
        return {"x": self.x, "y": self.y, "width": self.width, "height": self.height, "score": round(self.score, 3)}


class HaarFaceDetector:
    """Frontal-face Haar cascade shipped in opencv-python-headless (`cv2.data.haarcascades`)."""

    def __init__(
        self,
        cascade_path: str | Path | None = None,
        *,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_face_size: int = 50,
        min_score: float = 0.0,
    ):
        if cascade_path is None:
            cascade_path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        self.cascade = cv2.CascadeClassifier(str(cascade_path))
        if self.cascade.empty():
            raise RuntimeError(f"could not load Haar cascade {cascade_path}")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_face_size = min_face_size
        self.min_score = min_score

    def detect(self, grey: np.ndarray) -> list[FaceBox]:
        """Faces in a grey frame scoring at least `min_score`, largest first.

        Same call as fer's (detectMultiScale with its parameters), plus the cascade's level weight
        per box: plain Haar keeps some face-like clutter (on the astronaut photo, part of the space
        shuttle), which scores far lower than real faces.
        """
        found, _levels, weights = self.cascade.detectMultiScale3(
            grey,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            flags=cv2.CASCADE_SCALE_IMAGE,
            minSize=(self.min_face_size, self.min_face_size),
            outputRejectLevels=True,
        )
        boxes = [
            FaceBox(int(x), int(y), int(w), int(h), float(score))
            for (x, y, w, h), score in zip(found, np.ravel(weights), strict=True)
        ]
        boxes = [b for b in boxes if b.score >= self.min_score]
        return sorted(boxes, key=lambda b: b.area, reverse=True)


def to_square(box: FaceBox) -> FaceBox:
    """Grow the shorter side, centred (fer's `tosquare`)."""
    x, y, w, h = box.x, box.y, box.width, box.height
    if h > w:
        diff = h - w
        x -= diff // 2
        w += diff
    elif w > h:
        diff = w - h
        y -= diff // 2
        h += diff
    return FaceBox(x, y, w, h)


def pad_frame(frame: np.ndarray, padding: int = FRAME_PADDING) -> np.ndarray:
    """Constant border of the mean of the bottom two rows, per channel (fer's `pad`)."""
    bottom = frame[-2:]
    mean = cv2.mean(bottom)
    channels = 1 if frame.ndim == 2 else frame.shape[2]
    return cv2.copyMakeBorder(
        frame, padding, padding, padding, padding, cv2.BORDER_CONSTANT, value=list(mean[: max(channels, 1)])
    )


def crop_faces(
    frame: np.ndarray, boxes: list[FaceBox], offsets: tuple[int, int] = (10, 10), padding: int = FRAME_PADDING
) -> list[np.ndarray]:
    """Classifier crops, one per box (empty boxes cannot happen: the detector's minimum size is >= 1)."""
    if not boxes:
        return []
    padded = pad_frame(frame, padding)
    x_off, y_off = offsets
    crops = []
    for box in boxes:
        sq = to_square(box)
        x1 = max(0, sq.x - x_off + padding)
        y1 = max(0, sq.y - y_off + padding)
        x2 = sq.x + sq.width + x_off + padding
        y2 = sq.y + sq.height + y_off + padding
        crops.append(padded[y1:y2, x1:x2])
    return crops
