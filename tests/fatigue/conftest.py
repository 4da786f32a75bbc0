"""Shared fixtures: the real MediaPipe engine (loaded once), real face images, settings."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vigil_fatigue.geometry import LEFT_EYE, LEFT_EYE_CONTOUR, RIGHT_EYE, RIGHT_EYE_CONTOUR
from vigil_fatigue.settings import FatigueSettings


@pytest.fixture(scope="session")
def settings() -> FatigueSettings:
    return FatigueSettings()


@pytest.fixture(scope="session")
def engine(settings):
    from vigil_fatigue.backend import mediapipe_engine_factory

    engine = mediapipe_engine_factory(settings)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def astronaut_bgr() -> np.ndarray:
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


@pytest.fixture(scope="session")
def astronaut_points(engine, astronaut_bgr) -> np.ndarray:
    faces = engine.detect([astronaut_bgr])[0]
    assert len(faces) == 1
    return faces[0].points


def close_eyes(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The same face with its eyes shut: the eye openings found by the mesh are inpainted with the
    surrounding skin and a dark lid line is drawn from corner to corner along the lower lid."""
    mask = np.zeros(image.shape[:2], np.uint8)
    for contour in (RIGHT_EYE_CONTOUR, LEFT_EYE_CONTOUR):
        cv2.fillPoly(mask, [np.round(points[list(contour), :2]).astype(np.int32)], 255)
    mask = cv2.dilate(mask, np.ones((5, 5), np.uint8))
    closed = cv2.inpaint(image, mask, 5, cv2.INPAINT_TELEA)
    for p1, _p2, _p3, p4, p5, p6 in (RIGHT_EYE, LEFT_EYE):
        lid = np.round(points[[p1, p6, p5, p4], :2]).astype(np.int32)
        cv2.polylines(closed, [lid], False, (40, 40, 60), 2, cv2.LINE_AA)
    return closed


@pytest.fixture(scope="session")
def astronaut_closed_bgr(astronaut_bgr, astronaut_points) -> np.ndarray:
    return close_eyes(astronaut_bgr, astronaut_points)
