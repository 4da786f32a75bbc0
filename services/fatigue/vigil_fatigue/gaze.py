"""Gaze from the iris points of the refined (478-point) mesh: where each eye looks, in degrees.

Each eye is a sphere; the iris centre's offset from the eye's centre (midway between its corners),
measured along and across the corner-to-corner axis (so head roll does not read as gaze), is the
sine of the eye's rotation times the eyeball radius. The radius in pixels comes from the iris
itself: the human iris is ~11.7 mm across (the constant MediaPipe Iris uses for depth; Ando et
al., "Real-time Pupil Tracking from Monocular Video for Digital Puppetry", 2020) and the eyeball
radius ~12 mm (axial length ~24 mm, Bekerman et al., J Ophthalmol 2014:503645). The eye's rest
position is not exactly the corners' midpoint, so sessions compare gaze with their own calibrated
straight-ahead direction (session.py), not with zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

IRIS_DIAMETER_MM = 11.7
EYEBALL_RADIUS_MM = 12.0
NUM_REFINED_POINTS = 478
# (outer or inner corner on the image's left, the other corner, the iris's 5 points: centre first)
RIGHT_EYE_GAZE = (33, 133, (468, 469, 470, 471, 472))  # the subject's right eye (image left)
LEFT_EYE_GAZE = (362, 263, (473, 474, 475, 476, 477))


@dataclass(frozen=True)
class EyeGaze:
    """Degrees. yaw > 0: looking toward the image's left (the head-yaw sign); pitch > 0: down."""

    yaw: float
    pitch: float


@dataclass(frozen=True)
class Gaze:
    left: EyeGaze
    right: EyeGaze

    @property
    def yaw(self) -> float:
        return (self.left.yaw + self.right.yaw) / 2.0

    @property
    def pitch(self) -> float:
        return (self.left.pitch + self.right.pitch) / 2.0


def eye_gaze(points: np.ndarray, eye: tuple[int, int, tuple[int, ...]]) -> EyeGaze | None:
    image_left, image_right, iris = eye
    xy = points[:, :2]
    axis = xy[image_right] - xy[image_left]
    width = float(np.linalg.norm(axis))
    # Iris diameter: mean of its two spans (points 1-3 and 2-4 lie on opposite sides of the centre).
    diameter = (np.linalg.norm(xy[iris[1]] - xy[iris[3]]) + np.linalg.norm(xy[iris[2]] - xy[iris[4]])) / 2.0
    if width <= 1e-6 or diameter <= 1e-6:
        return None
    along = axis / width
    across = np.array([-along[1], along[0]])  # image "down" for a level eye
    offset = xy[iris[0]] - (xy[image_left] + xy[image_right]) / 2.0
    radius = diameter / 2.0 * (2.0 * EYEBALL_RADIUS_MM / IRIS_DIAMETER_MM)
    return EyeGaze(
        yaw=-_degrees_asin(float(offset @ along) / radius),  # iris toward image left -> yaw > 0
        pitch=_degrees_asin(float(offset @ across) / radius),
    )


def measure_gaze(points: np.ndarray) -> Gaze | None:
    """Both eyes' gaze, or None for a mesh without iris points (468) or a degenerate eye."""
    if len(points) < NUM_REFINED_POINTS:
        return None
    left, right = eye_gaze(points, LEFT_EYE_GAZE), eye_gaze(points, RIGHT_EYE_GAZE)
    if left is None or right is None:
        return None
    return Gaze(left=left, right=right)


def _degrees_asin(value: float) -> float:
    return math.degrees(math.asin(max(-1.0, min(1.0, value))))
