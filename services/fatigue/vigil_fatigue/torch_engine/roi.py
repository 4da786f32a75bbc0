"""Regions of interest: detector letterbox, face ROI from a detection, warps and projections.

Mirrors MediaPipe 0.10.21 on CPU: ImageToTensorCalculator (OpenCV path: the ROI's corners, from
cv::boxPoints, are mapped onto the tensor's corners with a perspective warp of the uint8 image,
bilinear, then scaled to the float range), DetectionProjectionCalculator,
DetectionsToRectsCalculator (rotation from the two eye keypoints), RectTransformationCalculator
(square on the long side, x1.5), AssociationNormRectCalculator (IoU > 0.5 duplicates dropped)
and LandmarkProjectionCalculator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .detection import Detection

ROI_SCALE = 1.5
DUPLICATE_ROI_IOU = 0.5


@dataclass(frozen=True)
class Roi:
    """A rotated rectangle in pixels; rotation in radians (MediaPipe's sign convention)."""

    cx: float
    cy: float
    width: float
    height: float
    rotation: float = 0.0


def letterbox_roi(width: int, height: int) -> Roi:
    """The whole frame, padded (centred) to a square, as the detector sees it."""
    side = float(max(width, height))
    return Roi(width / 2.0, height / 2.0, side, side)


def warp(image: np.ndarray, roi: Roi, size: int, border: int) -> np.ndarray:
    """The ROI of `image` resampled to (size, size), same dtype and channels."""
    corners = cv2.boxPoints(((roi.cx, roi.cy), (roi.width, roi.height), math.degrees(roi.rotation)))
    target = np.array([[0, size], [0, 0], [size, 0], [size, size]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(corners.astype(np.float32), target)
    return cv2.warpPerspective(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=border, borderValue=0)


def project_detection(detection: Detection, roi: Roi) -> Detection:
    """Detector-input coordinates (normalised) -> frame pixels, for an unrotated ROI."""
    scale = np.array([roi.width, roi.height])
    origin = np.array([roi.cx, roi.cy]) - scale / 2.0
    box = np.concatenate([detection.box[:2] * scale + origin, detection.box[2:] * scale + origin])
    return Detection(box, detection.keypoints * scale + origin, detection.score)


def _normalize_radians(angle: float) -> float:
    return angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))


def face_roi(detection: Detection) -> Roi:
    """Landmark-model ROI of a detection in frame pixels: box centre, rotated so the eyes are
    level, square on the long side, scaled 1.5x."""
    x0, y0, x1, y1 = detection.box
    (ex0, ey0), (ex1, ey1) = detection.keypoints[0], detection.keypoints[1]
    rotation = _normalize_radians(-math.atan2(-(ey1 - ey0), ex1 - ex0))
    side = max(x1 - x0, y1 - y0) * ROI_SCALE
    return Roi((x0 + x1) / 2.0, (y0 + y1) / 2.0, side, side, rotation)


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
