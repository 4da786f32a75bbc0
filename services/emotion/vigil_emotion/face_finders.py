"""Face finders: boxes for every frame of a batch, and the classifier crops of those boxes.

Two detectors behind one interface (setting `detector`):
- `blazeface` (default): MediaPipe's short-range BlazeFace converted to torch (shared_vision), one
  forward pass for all frames of a batch; finds turned and tilted faces Haar misses.
- `haar`: OpenCV's frontal-face cascade with fer's parameters, one frame at a time (faces.py).

BlazeFace box -> classifier crop (the mini-Xception was trained and is used with Haar-style
crops, so the rule maps BlazeFace's box onto the box Haar draws around the same face. Measured
on the astronaut and Grace Hopper photos at 0.5-1.5x: Haar's square is 1.0-1.2x BlazeFace's side,
its centre 0.13-0.18 sides higher; the classifier is sensitive to the margin, and of scales
1.05-1.2 x shifts 0.12-0.18 the pair below gave the closest probabilities to the Haar path on 8
frontal faces (largest difference 0.03; 1.1/0.15 gave 0.44 on Grace Hopper at 1.5x):
  1. side = CROP_SIDE_SCALE (1.2) x the longer side of the BlazeFace box;
  2. centre = the box centre moved CROP_CENTRE_SHIFT (0.12) x side towards the top of the head
     (along the face's own vertical axis);
  3. rotation = the angle of the eye line (keypoints 0 and 1) when it is at least
     MIN_LEVELLED_TILT_DEG (10 deg), so a tilted head is cut out upright; below that the crop stays
     axis-aligned like Haar's (levelling Grace Hopper's 6 deg tilt moved her probabilities away
     from the Haar path's);
  4. the square grows by `face_offset_x`/`face_offset_y` pixels on each side (fer's offsets, as
     for Haar) and is resampled upright at its own resolution; pixels outside the frame take the
     mean of the frame's bottom two rows (fer's padding value).
For a level face the crop is Haar's crop of that square pixel for pixel (integer corners, no
rotation). The reported box is the square before the offsets, axis-aligned.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from .faces import FaceBox, HaarFaceDetector, crop_faces

CROP_SIDE_SCALE = 1.2
CROP_CENTRE_SHIFT = 0.12
MIN_LEVELLED_TILT_DEG = 10.0
# The detector keeps this many faces per frame after NMS; `max_faces` cuts later, so that
# `faces_detected` still counts every face.
DETECTOR_MAX_FACES = 32


class FaceFinder(Protocol):
    name: str

    def find(self, frames: list[np.ndarray]) -> list[list[FaceBox]]:
        """Faces per BGR frame, largest first."""

    def crops(self, frame: np.ndarray, boxes: list[FaceBox], offsets: tuple[int, int]) -> list[np.ndarray]:
        """Classifier crops (BGR), one per box."""


class HaarFaces:
    name = "opencv-haar-frontalface"

    def __init__(self, *, scale_factor: float, min_neighbors: int, min_face_size: int, min_score: float):
        self._params = dict(
            scale_factor=scale_factor, min_neighbors=min_neighbors, min_face_size=min_face_size, min_score=min_score
        )
        # cv2.CascadeClassifier is not documented as thread-safe: one per worker thread.
        self._local = threading.local()
        self._detector()  # load the cascade now, so a broken OpenCV install fails at start-up

    def _detector(self) -> HaarFaceDetector:
        detector = getattr(self._local, "detector", None)
        if detector is None:
            detector = self._local.detector = HaarFaceDetector(**self._params)
        return detector

    def find(self, frames: list[np.ndarray]) -> list[list[FaceBox]]:
        return [self._detector().detect(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)) for frame in frames]

    def crops(self, frame: np.ndarray, boxes: list[FaceBox], offsets: tuple[int, int]) -> list[np.ndarray]:
        return crop_faces(frame, boxes, offsets)


class BlazeFaces:
    def __init__(self, weights: str | Path, *, device: str, min_score: float, min_face_size: int):
        from shared_vision.blazeface import BlazeFaceDetector

        self.detector = BlazeFaceDetector(weights, device=device, max_faces=DETECTOR_MAX_FACES, min_score=min_score)
        self.name = self.detector.name
        self.min_face_size = min_face_size

    def find(self, frames: list[np.ndarray]) -> list[list[FaceBox]]:
        found = []
        for detections in self.detector.detect(frames):  # one forward pass for all frames
            boxes = [crop_square(d.box, d.keypoints, d.score) for d in detections]
            boxes = [b for b in boxes if b.width >= self.min_face_size]
            found.append(sorted(boxes, key=lambda b: b.area, reverse=True))
        return found

    def crops(self, frame: np.ndarray, boxes: list[FaceBox], offsets: tuple[int, int]) -> list[np.ndarray]:
        if not boxes:
            return []
        border = cv2.mean(frame[-2:])[:3]
        return [upright_crop(frame, box, offsets, border) for box in boxes]


def crop_square(box: np.ndarray, keypoints: np.ndarray, score: float) -> FaceBox:
    """Steps 1-3 of the rule: the Haar-equivalent square of a BlazeFace detection (frame pixels),
    integer corners, with the eye-line rotation."""
    x0, y0, x1, y1 = (float(v) for v in box)
    (ex0, ey0), (ex1, ey1) = keypoints[0], keypoints[1]
    rotation = math.atan2(ey1 - ey0, ex1 - ex0)  # image coordinates (y down): clockwise positive
    if abs(math.degrees(rotation)) < MIN_LEVELLED_TILT_DEG:
        rotation = 0.0
    side = CROP_SIDE_SCALE * max(x1 - x0, y1 - y0)
    up = (math.sin(rotation), -math.cos(rotation))  # the face's "up" in the image
    cx = (x0 + x1) / 2 + CROP_CENTRE_SHIFT * side * up[0]
    cy = (y0 + y1) / 2 + CROP_CENTRE_SHIFT * side * up[1]
    size = max(1, round(side))
    return FaceBox(round(cx - size / 2), round(cy - size / 2), size, size, float(score), rotation)


def upright_crop(frame: np.ndarray, box: FaceBox, offsets: tuple[int, int], border: tuple[float, ...]) -> np.ndarray:
    """Step 4: the box plus offsets, rotated upright, at its own resolution."""
    width, height = box.width + 2 * offsets[0], box.height + 2 * offsets[1]
    cx, cy = box.x + box.width / 2, box.y + box.height / 2
    c, s = math.cos(box.rotation), math.sin(box.rotation)
    # Output pixel (u, v) samples the frame at centre + R(rotation) (u - width/2, v - height/2).
    inverse = np.array(
        [[c, -s, cx - c * width / 2 + s * height / 2], [s, c, cy - s * width / 2 - c * height / 2]], np.float64
    )
    return cv2.warpAffine(
        frame,
        inverse,
        (width, height),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=border,
    )


def make_face_finder(settings) -> FaceFinder:
    if settings.detector == "haar":
        return HaarFaces(
            scale_factor=settings.detector_scale_factor,
            min_neighbors=settings.detector_min_neighbors,
            min_face_size=settings.min_face_size,
            min_score=settings.detector_min_score,
        )
    return BlazeFaces(
        settings.blazeface_weights,
        device=settings.device,
        min_score=settings.blazeface_min_score,
        min_face_size=settings.min_face_size,
    )
