"""Rotated regions in pixels, the detector letterbox, warps and detection projection.

Mirrors MediaPipe 0.10.21 on CPU: ImageToTensorCalculator (OpenCV path: the ROI's corners, from
cv::boxPoints, are mapped onto the tensor's corners with a perspective warp of the uint8 image,
bilinear) and DetectionProjectionCalculator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .detection import Detection


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


def warp(image: np.ndarray, roi: Roi, size: int, border: int, border_value=0) -> np.ndarray:
    """The ROI of `image` resampled to (size, size), same dtype and channels."""
    corners = cv2.boxPoints(((roi.cx, roi.cy), (roi.width, roi.height), math.degrees(roi.rotation)))
    target = np.array([[0, size], [0, 0], [size, 0], [size, size]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(corners.astype(np.float32), target)
    return cv2.warpPerspective(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=border, borderValue=border_value
    )


def to_rgb_float(images: Sequence[np.ndarray], scale: float, offset: float = 0.0) -> np.ndarray:
    """Same-size BGR uint8 images -> one (N, H, W, 3) float32 RGB batch, pixel * scale + offset
    (one conversion pass per image, no intermediate copies)."""
    height, width = images[0].shape[:2]
    batch = np.empty((len(images), height, width, 3), np.float32)
    for out, image in zip(batch, images, strict=True):
        np.multiply(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), np.float32(scale), out=out)
    if offset:
        batch += np.float32(offset)
    return batch


def project_detection(detection: Detection, roi: Roi) -> Detection:
    """Detector-input coordinates (normalised) -> frame pixels, for an unrotated ROI."""
    scale = np.array([roi.width, roi.height])
    origin = np.array([roi.cx, roi.cy]) - scale / 2.0
    box = np.concatenate([detection.box[:2] * scale + origin, detection.box[2:] * scale + origin])
    return Detection(box, detection.keypoints * scale + origin, detection.score)


def normalize_radians(angle: float) -> float:
    return angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))


def eye_rotation(detection: Detection) -> float:
    """Rotation that levels the eyes (right eye = keypoint 0, left eye = keypoint 1), as
    DetectionsToRectsCalculator computes it."""
    (ex0, ey0), (ex1, ey1) = detection.keypoints[0], detection.keypoints[1]
    return normalize_radians(-math.atan2(-(ey1 - ey0), ex1 - ex0))
