"""Per-frame geometry on Face Mesh landmarks: eye aspect ratio, mouth aspect ratio, head pose, gaze."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .gaze import Gaze, measure_gaze

# Soukupová & Čech (2016) 6-point EAR: p1..p6 = outer/inner corner and two upper/lower lid points,
# EAR = (|p2-p6| + |p3-p5|) / (2 |p1-p4|). Indices in the MediaPipe 468-point mesh; "right"/"left"
# are the subject's own (the right eye appears on the image's left in a non-mirrored camera).
RIGHT_EYE = (33, 160, 158, 133, 153, 144)
LEFT_EYE = (362, 385, 387, 263, 373, 380)
# Closed outlines of the eye openings (used by tests to paint closed eyes).
RIGHT_EYE_CONTOUR = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE_CONTOUR = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
# MAR on the inner lips, the same form as EAR: corners 78/308, three vertical pairs.
MOUTH = (78, 82, 13, 312, 308, 317, 14, 87)

# Head pose: rigid mesh points (nose, eye corners; not the mouth or chin, which move when the
# subject yawns or talks and would read as a nod) and a generic adult head in mm, camera axes
# (x right, y down, z away from the camera), nose tip at the origin. Widths follow adult norms
# (Farkas, "Anthropometry of the Head and Face", 1994: outer eye corners ~90 mm apart, inner
# ~32 mm); depths are close to what Face Mesh itself reports for these points.
POSE_INDICES = (1, 2, 168, 33, 263, 133, 362)
POSE_MODEL_MM = np.array(
    [
        (0.0, 0.0, 0.0),  # 1: nose tip
        (0.0, 18.0, 20.0),  # 2: below the nose (subnasale)
        (0.0, -40.0, 25.0),  # 168: nose bridge between the eyes
        (-45.0, -38.0, 45.0),  # 33: right eye outer corner (image left)
        (45.0, -38.0, 45.0),  # 263: left eye outer corner (image right)
        (-16.0, -38.0, 32.0),  # 133: right eye inner corner
        (16.0, -38.0, 32.0),  # 362: left eye inner corner
    ],
    dtype=np.float64,
)


@dataclass(frozen=True)
class HeadPose:
    """Degrees. pitch > 0: chin down (nodding); yaw > 0: face turned toward the image's left;
    roll > 0: head tilted clockwise in the image."""

    pitch: float
    yaw: float
    roll: float


@dataclass(frozen=True)
class FaceGeometry:
    ear_left: float
    ear_right: float
    mar: float
    head_pose: HeadPose | None  # None when solvePnP fails
    gaze: Gaze | None = None  # None without iris points (a 468-point mesh)

    @property
    def ear(self) -> float:
        return (self.ear_left + self.ear_right) / 2.0


def aspect_ratio(points: np.ndarray, p1: int, p2: int, p3: int, p4: int, p5: int, p6: int) -> float:
    """(|p2-p6| + |p3-p5|) / (2 |p1-p4|) on the x, y coordinates."""
    xy = points[:, :2]
    width = np.linalg.norm(xy[p1] - xy[p4])
    if width <= 1e-6:
        return 0.0
    return float((np.linalg.norm(xy[p2] - xy[p6]) + np.linalg.norm(xy[p3] - xy[p5])) / (2.0 * width))


def mouth_aspect_ratio(points: np.ndarray) -> float:
    """Mean of three inner-lip openings over the mouth width."""
    xy = points[:, :2]
    c_right, u1, u2, u3, c_left, l3, l2, l1 = MOUTH
    width = np.linalg.norm(xy[c_right] - xy[c_left])
    if width <= 1e-6:
        return 0.0
    openings = np.linalg.norm(xy[[u1, u2, u3]] - xy[[l1, l2, l3]], axis=1)
    return float(openings.sum() / (3.0 * width))


def head_pose(points: np.ndarray, frame_width: int, frame_height: int) -> HeadPose | None:
    """Rotation of the generic head that projects onto the six landmarks (pinhole camera, f = width)."""
    image_points = points[list(POSE_INDICES), :2].astype(np.float64)
    focal = float(frame_width)
    camera = np.array([[focal, 0, frame_width / 2.0], [0, focal, frame_height / 2.0], [0, 0, 1]], dtype=np.float64)
    ok, rvec, _tvec = cv2.solvePnP(POSE_MODEL_MM, image_points, camera, None, flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        return None
    rotation, _ = cv2.Rodrigues(rvec)
    return HeadPose(*euler_from_rotation(rotation))


def euler_from_rotation(rotation: np.ndarray) -> tuple[float, float, float]:
    """(pitch, yaw, roll) in degrees for rotation = Rz(roll) @ Ry(yaw) @ Rx(pitch), camera axes."""
    pitch = math.atan2(rotation[2, 1], rotation[2, 2])
    yaw = -math.asin(float(np.clip(rotation[2, 0], -1.0, 1.0)))
    roll = math.atan2(rotation[1, 0], rotation[0, 0])
    # Rx here turns the face's forward axis (-z) toward +y (down) for pitch > 0, and Ry turns it
    # toward -x (image left) for yaw > 0: the signs documented on HeadPose.
    return math.degrees(pitch), math.degrees(yaw), math.degrees(roll)


def rotation_from_euler(pitch: float, yaw: float, roll: float) -> np.ndarray:
    """Inverse of euler_from_rotation (degrees in), used to build test poses."""
    p, y, r = (math.radians(v) for v in (pitch, yaw, roll))
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


def measure_face(points: np.ndarray, frame_width: int, frame_height: int) -> FaceGeometry:
    return FaceGeometry(
        ear_left=aspect_ratio(points, *LEFT_EYE),
        ear_right=aspect_ratio(points, *RIGHT_EYE),
        mar=mouth_aspect_ratio(points),
        head_pose=head_pose(points, frame_width, frame_height),
        gaze=measure_gaze(points),
    )
