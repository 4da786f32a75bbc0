"""Shared fixtures: the real MediaPipe engine (loaded once), real face images, settings."""

from __future__ import annotations

import numpy as np
import pytest
from fatigue import images

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
    return images.astronaut_bgr()


@pytest.fixture(scope="session")
def astronaut_points(engine, astronaut_bgr) -> np.ndarray:
    faces = engine.detect([astronaut_bgr])[0]
    assert len(faces) == 1
    return faces[0].points


@pytest.fixture(scope="session")
def astronaut_closed_bgr(astronaut_bgr, astronaut_points) -> np.ndarray:
    return images.close_eyes(astronaut_bgr, astronaut_points)
