"""Gaze geometry on synthetic iris points, and the session's on-target / distraction logic."""

import math

import numpy as np
import pytest

from vigil_fatigue.gaze import EYEBALL_RADIUS_MM, IRIS_DIAMETER_MM, LEFT_EYE_GAZE, RIGHT_EYE_GAZE, measure_gaze
from vigil_fatigue.session import FrameObservation, SessionTracker
from vigil_fatigue.settings import FatigueSettings

IRIS_PX = 12.0  # iris diameter in the synthetic face
RADIUS_PX = IRIS_PX * EYEBALL_RADIUS_MM / IRIS_DIAMETER_MM


def _face(offset=(0.0, 0.0), roll_deg=0.0):
    """478 points: two eyes 30 px wide, irises displaced by `offset` px (eye axes), head rolled."""
    points = np.zeros((478, 3))
    roll = math.radians(roll_deg)
    axis, across = np.array([math.cos(roll), math.sin(roll)]), np.array([-math.sin(roll), math.cos(roll)])
    for (a, b, iris), centre in ((RIGHT_EYE_GAZE, np.array([100.0, 100.0])), (LEFT_EYE_GAZE, np.array([180.0, 100.0]))):
        points[a, :2], points[b, :2] = centre - 15 * axis, centre + 15 * axis
        c = centre + offset[0] * axis + offset[1] * across
        points[iris[0], :2] = c
        for k, direction in zip(iris[1:], (axis, -across, -axis, across), strict=True):
            points[k, :2] = c + IRIS_PX / 2 * direction
    return points


def test_centred_irises_look_straight_ahead():
    gaze = measure_gaze(_face())
    assert gaze.yaw == pytest.approx(0.0, abs=1e-9) and gaze.pitch == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("roll", [0.0, 20.0])
def test_iris_offsets_give_eye_rotation_whatever_the_roll(roll):
    dx = 4.0
    gaze = measure_gaze(_face((-dx, 0.0), roll_deg=roll))  # toward the image's left
    assert gaze.yaw == pytest.approx(math.degrees(math.asin(dx / RADIUS_PX)))
    assert gaze.left.yaw == pytest.approx(gaze.right.yaw) and gaze.pitch == pytest.approx(0.0, abs=1e-9)
    down = measure_gaze(_face((0.0, 3.0), roll_deg=roll))
    assert down.pitch == pytest.approx(math.degrees(math.asin(3.0 / RADIUS_PX))) and abs(down.yaw) < 1e-9


def test_no_iris_points_no_gaze():
    assert measure_gaze(np.zeros((468, 3))) is None


def _obs(t, yaw=0.0, pitch=0.0, ear=0.3):
    return FrameObservation(t, True, ear=ear, mar=0.0, pitch=0.0, look_yaw=yaw, look_pitch=pitch)


def test_distraction_after_two_seconds_away_and_blinks_do_not_end_the_glance():
    settings = FatigueSettings(calibration_s=2.0, calibration_min_frames=5)
    tracker = SessionTracker("s", settings)
    t = 0.0
    for _ in range(25):  # calibrate looking 5 degrees right of the camera
        tracker.observe(_obs(t, yaw=5.0))
        t += 0.1
    assert tracker.calibration.look_baseline == pytest.approx((5.0, 0.0))
    assert tracker.observe(_obs(t, yaw=12.0)).gaze_on_target is True  # within 15 degrees
    events, on_target = [], []
    for i in range(25):
        t += 0.1
        blink = i in (5, 6)  # a blink mid-glance: gaze unknown
        verdict = tracker.observe(_obs(t, yaw=40.0, ear=0.05 if blink else 0.3))
        on_target.append(verdict.gaze_on_target)
        events.extend((i, e) for e in verdict.events if e == "distraction")
    assert on_target[5] is None and on_target[0] is False
    assert events == [(20, "distraction")]
    assert tracker.metrics()["distraction_count"] == 1
    t += 0.1
    assert tracker.observe(_obs(t, yaw=5.0)).gaze_on_target is True
    assert tracker.metrics()["looking_away_duration_s"] == 0.0


def test_no_gaze_before_calibration():
    tracker = SessionTracker("s", FatigueSettings())
    assert tracker.observe(_obs(0.0, yaw=50.0)).gaze_on_target is None
    assert tracker.metrics()["gaze_baseline"] is None
