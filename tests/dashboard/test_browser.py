"""The dashboard in headless Chromium against the real stack: the camera is a Y4M file of a real
face (eyes open for OPEN_S, then painted shut), an EDF recording is attached as the EEG stream,
and the DOM must show the face, the eye state, PERCLOS rising, the emotion, the EEG and the fused
state, with no console error. A screenshot is saved and checked not to be blank."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pyedflib
import pytest

from .conftest import chrome, write_y4m
from .stack import BareGatewayThread, StackThread

REPO = Path(__file__).resolve().parents[2]
EDF = Path(pyedflib.__file__).parent / "data" / "test_generator.edf"
FPS = 4  # of the Y4M file; the page samples the camera at its own rate
OPEN_S = 14  # longer than the fatigue service's 10 s EAR calibration
CLOSED_S = 40
EMOTIONS = {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}

READ_DOM = """
const ids = ["conn-status", "face-state", "eye-state", "ear", "ear-threshold", "perclos", "emotion-label",
             "eeg-level", "eeg-z", "fused-score", "fused-level", "fused-confidence", "sent", "answered",
             "dropped", "error-count", "latency"];
const out = {};
for (const id of ids) out[id] = document.getElementById(id).textContent.trim();
out.chips = [...document.querySelectorAll("#health .chip")].map((c) => [c.dataset.backend, c.dataset.ok]);
out.contributions = [...document.querySelectorAll("#fused-contributions li")].map((li) => li.dataset.status);
out.messages = [...document.querySelectorAll("#messages li")].map((li) => li.textContent);
return out;
"""


def number(text: str) -> float | None:
    try:
        return float(text.rstrip("%"))
    except ValueError:
        return None


@pytest.fixture()
def browser(chromium, tmp_path, faces):
    opened, closed = faces
    feed = write_y4m(tmp_path / "camera.y4m", [opened] * (OPEN_S * FPS) + [closed] * (CLOSED_S * FPS), FPS)
    driver = chrome(
        chromium,
        (
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={feed}",
        ),
    )
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def stack(fatigue_weights, emotion_model):
    thread = StackThread(fatigue_weights, emotion_model)
    url = thread.start_and_wait()
    yield url
    thread.stop()


def wait_until(driver, predicate, timeout: float, what: str, timeline: list):
    deadline = time.monotonic() + timeout
    while True:
        dom = driver.execute_script(READ_DOM)
        timeline.append((round(time.monotonic(), 2), dom))
        if predicate(dom):
            return dom
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last DOM: {dom}")
        time.sleep(0.4)


def test_dashboard_live_in_chromium(browser, stack, tmp_path):
    driver = browser
    http_url = stack.replace("ws://", "http://") + "/"
    driver.get(http_url)
    timeline: list = []
    wait_until(driver, lambda d: d["conn-status"] == "connected", 20, "the WebSocket connection", timeline)
    dom = wait_until(driver, lambda d: len(d["chips"]) == 3, 15, "backend health", timeline)
    assert sorted(dom["chips"]) == [["eeg", "true"], ["emotion", "true"], ["fatigue", "true"]]

    driver.find_element("id", "edf-file").send_keys(str(EDF))
    driver.find_element("id", "start-camera").click()
    started = time.monotonic()

    dom = wait_until(
        driver, lambda d: d["face-state"] == "detected" and d["eye-state"] == "open", 60, "an open-eyed face", timeline
    )
    dom = wait_until(driver, lambda d: d["emotion-label"] in EMOTIONS, 30, "an emotion label", timeline)
    dom = wait_until(
        driver, lambda d: d["eeg-level"] in ("alert", "drowsy", "very drowsy"), 30, "an EEG level", timeline
    )
    remaining_open = OPEN_S - (time.monotonic() - started) - 1.0
    if remaining_open > 0:
        time.sleep(remaining_open)
    open_dom = driver.execute_script(READ_DOM)
    perclos_open = number(open_dom["perclos"])
    assert perclos_open is not None and perclos_open < 10.0, open_dom

    dom = wait_until(driver, lambda d: d["eye-state"] == "closed", 25, "the eye state to flip to closed", timeline)
    dom = wait_until(
        driver,
        lambda d: (number(d["perclos"]) or 0) >= perclos_open + 10.0,
        25,
        "PERCLOS to rise by 10 points",
        timeline,
    )
    assert dom["face-state"] == "detected"
    assert "calibrated" in dom["ear-threshold"], dom  # the closed verdict uses this subject's own threshold
    assert dom["fused-level"] in ("alert", "drowsy", "very drowsy") and number(dom["fused-score"]) is not None
    assert dom["contributions"] == ["used", "used", "used"], dom  # fatigue, eeg, emotion all counted
    assert int(dom["sent"]) > 0 and int(dom["answered"]) > 0

    ears_open = [number(d["ear"]) for t, d in timeline if t < started + OPEN_S - 2 and d["eye-state"] == "open"]
    ears_closed = [number(d["ear"]) for _, d in timeline if d["eye-state"] == "closed"]
    assert np.median([e for e in ears_open if e]) > np.median([e for e in ears_closed if e])

    shot = tmp_path / "dashboard.png"
    assert driver.save_screenshot(str(shot))
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[0] > 500 and image.shape[1] > 1000
    assert float(image.std()) > 20.0, "screenshot looks blank"
    view = driver.execute_script(
        "const c = document.getElementById('view'); const x = c.getContext('2d').getImageData(0, 0, c.width, c.height);"
        "let s = 0, s2 = 0; for (let i = 0; i < x.data.length; i += 16) { s += x.data[i]; s2 += x.data[i] ** 2; }"
        "const n = x.data.length / 16; return Math.sqrt(s2 / n - (s / n) ** 2);"
    )
    assert view > 20.0, "the video canvas shows no picture"
    if not os.environ.get("CI"):  # refresh the README's picture on developer runs, never dirty CI's checkout
        (REPO / "docs" / "img").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, REPO / "docs" / "img" / "dashboard.png")

    logs = driver.get_log("browser")
    severe = [entry for entry in logs if entry["level"] == "SEVERE"]
    assert not severe, severe
    assert dom["error-count"] == "0", dom["messages"]


def test_replay_of_a_local_video_file(chromium, stack, tmp_path, faces):
    """The file picker instead of the camera: a VP8 WebM of the open-eyed face, looped by the page."""
    from selenium.webdriver.common.by import By

    video = tmp_path / "face.webm"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"VP80"), 10.0, (512, 512))
    assert writer.isOpened()
    for k in range(30):
        writer.write(np.roll(faces[0], k, axis=1))
    writer.release()
    driver = chrome(chromium)
    timeline: list = []
    try:
        driver.get(stack.replace("ws://", "http://") + "/")
        wait_until(driver, lambda d: d["conn-status"] == "connected", 20, "the WebSocket connection", timeline)
        driver.find_element(By.ID, "video-file").send_keys(str(video))
        dom = wait_until(
            driver,
            lambda d: d["face-state"] == "detected" and d["eye-state"] == "open" and d["emotion-label"] in EMOTIONS,
            60,
            "a face from the video file",
            timeline,
        )
        assert driver.find_element(By.ID, "source-info").text.startswith("video file 512×512")
        assert dom["contributions"] == ["used", "missing", "used"], dom  # no EEG attached this time
        assert dom["error-count"] == "0", dom["messages"]
        assert not [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        driver.quit()


def test_token_field_with_auth_on(chromium):
    """Auth on: the page's first attempt (no token) is refused with a readable message; with the
    token typed in it connects (the token travels as the `token` query parameter)."""
    from selenium.webdriver.common.by import By

    thread = BareGatewayThread(("open-sesame",))
    url = thread.start_and_wait()
    driver = chrome(chromium)
    timeline: list = []
    try:
        driver.get(url.replace("ws://", "http://") + "/")
        dom = wait_until(driver, lambda d: any("401" in m for m in d["messages"]), 20, "the refusal", timeline)
        assert dom["conn-status"] != "connected"
        driver.find_element(By.ID, "token").send_keys("wrong")
        driver.find_element(By.ID, "connect").click()
        time.sleep(1.5)
        assert driver.execute_script(READ_DOM)["conn-status"] != "connected"
        token = driver.find_element(By.ID, "token")
        token.clear()
        token.send_keys("open-sesame")
        driver.find_element(By.ID, "connect").click()
        dom = wait_until(
            driver, lambda d: d["conn-status"] == "connected", 20, "the connection with the token", timeline
        )
        # Only the refused handshakes may appear in the console; nothing else went wrong.
        refused = ("401", "Authentication failed")  # Chromium's words for a 401 at the handshake
        severe = [
            e
            for e in driver.get_log("browser")
            if e["level"] == "SEVERE" and not any(word in e["message"] for word in refused)
        ]
        assert not severe, severe
    finally:
        driver.quit()
        thread.stop()
