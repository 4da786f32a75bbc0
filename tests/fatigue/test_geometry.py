"""EAR / MAR formulas and head-pose recovery on landmarks with known geometry."""

import math

import cv2
import numpy as np
import pytest

from vigil_fatigue import geometry as g


def _points_with(mapping: dict[int, tuple[float, float]]) -> np.ndarray:
    points = np.zeros((478, 3))
    for index, (x, y) in mapping.items():
        points[index, :2] = (x, y)
    return points


def test_ear_is_the_soukupova_cech_ratio():
    p1, p2, p3, p4, p5, p6 = g.RIGHT_EYE
    # Eye 30 px wide; lid gaps 9 px and 6 px -> (9 + 6) / (2 * 30) = 0.25.
    points = _points_with({p1: (0, 0), p4: (30, 0), p2: (10, -4), p6: (10, 5), p3: (20, -3), p5: (20, 3)})
    assert g.aspect_ratio(points, *g.RIGHT_EYE) == pytest.approx(0.25)


def test_ear_of_a_degenerate_eye_is_zero_not_nan():
    assert g.aspect_ratio(np.zeros((478, 3)), *g.LEFT_EYE) == 0.0


def test_mar_is_mean_inner_lip_opening_over_width():
    c_r, u1, u2, u3, c_l, l3, l2, l1 = g.MOUTH
    # Width 50, openings 20, 30, 25 -> 75 / 150 = 0.5.
    points = _points_with(
        {
            c_r: (0, 0),
            c_l: (50, 0),
            u1: (10, -10),
            l1: (10, 10),
            u2: (25, -15),
            l2: (25, 15),
            u3: (40, -12),
            l3: (40, 13),
        }
    )
    assert g.mouth_aspect_ratio(points) == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("pitch", "yaw", "roll"), [(0, 0, 0), (20, 0, 0), (-15, 10, 0), (5, -25, 8), (0, 0, -20), (30, 15, 10)]
)
def test_head_pose_recovers_known_rotation(pitch, yaw, roll):
    """Project the 3D head with a known rotation through the same pinhole camera; solvePnP must
    give the angles back (sign conventions included)."""
    width, height = 640, 480
    camera = np.array([[width, 0, width / 2], [0, width, height / 2], [0, 0, 1]], dtype=np.float64)
    rotation = g.rotation_from_euler(pitch, yaw, roll)
    rvec, _ = cv2.Rodrigues(rotation)
    tvec = np.array([0.0, 0.0, 600.0])  # head 60 cm in front of the camera
    projected, _ = cv2.projectPoints(g.POSE_MODEL_MM, rvec, tvec, camera, None)
    points = np.zeros((478, 3))
    points[list(g.POSE_INDICES), :2] = projected.reshape(-1, 2)
    pose = g.head_pose(points, width, height)
    assert pose is not None
    assert (pose.pitch, pose.yaw, pose.roll) == pytest.approx((pitch, yaw, roll), abs=0.5)


def test_pitch_sign_chin_down_is_positive():
    """Chin down moves the nose tip down in the image relative to the eye corners."""
    rotation = g.rotation_from_euler(20, 0, 0)
    nose_forward = rotation @ np.array([0.0, 0.0, -1.0])  # the face looks toward -z (the camera)
    assert nose_forward[1] > 0  # +y is down in camera axes


def test_euler_round_trip():
    for angles in [(10, 20, 30), (-40, 5, -15), (0, -60, 0)]:
        assert g.euler_from_rotation(g.rotation_from_euler(*angles)) == pytest.approx(angles, abs=1e-9)
    assert math.isfinite(g.euler_from_rotation(np.eye(3))[0])
