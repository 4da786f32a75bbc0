"""Face-landmark regions of interest: face ROI from a detection, duplicates, landmark projection.

Mirrors MediaPipe 0.10.21: DetectionsToRectsCalculator (rotation from the two eye keypoints),
RectTransformationCalculator (square on the long side, x1.5), AssociationNormRectCalculator (IoU >
0.5 duplicates dropped) and LandmarkProjectionCalculator. The generic parts (Roi, the detector
letterbox, warps, detection projection) live in shared_vision.roi and are re-exported here.
"""

from __future__ import annotations

import math

import numpy as np

from shared_vision.detection import Detection
from shared_vision.roi import Roi, eye_rotation, letterbox_roi, project_detection, warp
from shared_vision.roi import normalize_radians as _normalize_radians

__all__ = [
    "Roi",
    "letterbox_roi",
    "warp",
    "project_detection",
    "face_roi",
    "drop_duplicate_rois",
    "project_landmarks",
    "_normalize_radians",
]

ROI_SCALE = 1.5
DUPLICATE_ROI_IOU = 0.5


def face_roi(detection: Detection) -> Roi:
    """Landmark-model ROI of a detection in frame pixels: box centre, rotated so the eyes are
    level, square on the long side, scaled 1.5x."""
    x0, y0, x1, y1 = detection.box
    side = max(x1 - x0, y1 - y0) * ROI_SCALE
    return Roi((x0 + x1) / 2.0, (y0 + y1) / 2.0, side, side, eye_rotation(detection))


def _axis_iou(a: Roi, b: Roi) -> float:
    ax0, ay0, bx0, by0 = a.cx - a.width / 2, a.cy - a.height / 2, b.cx - b.width / 2, b.cy - b.height / 2
    iw = min(ax0 + a.width, bx0 + b.width) - max(ax0, bx0)
    ih = min(ay0 + a.height, by0 + b.height) - max(ay0, by0)
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / (a.width * a.height + b.width * b.height - inter)


def drop_duplicate_rois(rois: list[Roi]) -> list[int]:
    """Indices of the ROIs kept: a ROI overlapping a later one by IoU > 0.5 (rotation ignored,
    as MediaPipe does) is replaced by it."""
    kept: list[int] = []
    for i, roi in enumerate(rois):
        kept = [k for k in kept if _axis_iou(rois[k], roi) <= DUPLICATE_ROI_IOU]
        kept.append(i)
    return kept


def project_landmarks(raw: np.ndarray, roi: Roi, input_size: int) -> np.ndarray:
    """Landmark-model output (N, 3) in input pixels -> frame pixels (z scaled like x)."""
    local = raw.astype(np.float64) / input_size
    x, y = local[:, 0] - 0.5, local[:, 1] - 0.5
    cos, sin = math.cos(roi.rotation), math.sin(roi.rotation)
    out = np.empty_like(local)
    out[:, 0] = (cos * x - sin * y) * roi.width + roi.cx
    out[:, 1] = (sin * x + cos * y) * roi.height + roi.cy
    out[:, 2] = local[:, 2] * roi.width
    return out
