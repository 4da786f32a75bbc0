"""The real MediaPipe engine and the whole per-frame pipeline on real face photos."""

import time

import cv2
import numpy as np
import pytest

from vigil_fatigue.analyzer import FatigueAnalyzer
from vigil_fatigue.geometry import measure_face
from vigil_fatigue.request import FatigueRequest


def _analyze(engine, settings, frame, timestamp=1.0, session_id="s"):
    return FatigueAnalyzer(engine, settings).analyze(FatigueRequest(session_id, False, timestamp, frame))


def test_astronaut_face_found_with_full_mesh(engine, astronaut_bgr):
    faces = engine.detect([astronaut_bgr])[0]
    assert len(faces) == 1
    face = faces[0]
    assert face.points.shape == (478, 3)
    x, y, w, h = face.box
    # The face sits in the upper middle of the 512x512 photo, about 90 px wide.
    assert 150 < x < 220 and 40 < y < 110 and 60 < w < 130 and 80 < h < 140
    assert face.score is not None and face.score > 0.8


def test_astronaut_eyes_open_and_head_roughly_frontal(engine, settings, astronaut_bgr):
    reply = _analyze(engine, settings, astronaut_bgr)
    assert reply["face_detected"] is True and reply["face_count"] == 1
    for key in ("ear_left", "ear_right", "ear"):
        assert 0.25 < reply[key] < 0.42, key  # open human eyes: EAR ~0.25-0.35
    assert reply["eyes_closed"] is False
    assert reply["mouth_open"] is False  # a closed-lip smile is no yawn
    pose = reply["head_pose"]
    # Facing the camera; the photo is taken slightly from above (chin a little down).
    assert abs(pose["yaw"]) < 12 and abs(pose["roll"]) < 12 and -5 < pose["pitch"] < 30


def test_closed_eye_version_reads_closed(engine, settings, astronaut_bgr, astronaut_closed_bgr):
    open_ear = measure_face(engine.detect([astronaut_bgr])[0][0].points, 512, 512).ear
    reply = _analyze(engine, settings, astronaut_closed_bgr)
    assert reply["face_detected"] is True
    assert reply["eyes_closed"] is True
    assert reply["ear"] < 0.15
    assert reply["ear"] < 0.4 * open_ear  # far below the same face with open eyes


def test_mirrored_photo_swaps_eye_labels(engine, astronaut_bgr):
    """Left/right are the subject's own eyes: mirroring the photo swaps which eye is which."""
    direct = measure_face(engine.detect([astronaut_bgr])[0][0].points, 512, 512)
    mirrored = measure_face(engine.detect([cv2.flip(astronaut_bgr, 1)])[0][0].points, 512, 512)
    assert direct.head_pose.yaw * mirrored.head_pose.yaw < 0  # turned the other way
    assert abs(direct.ear - mirrored.ear) < 0.05


def test_no_face_is_a_normal_fast_reply_and_not_closed_eyes(engine, settings):
    rng = np.random.default_rng(0)
    frames = [np.full((480, 640, 3), 127, np.uint8), rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)]
    analyzer = FatigueAnalyzer(engine, settings)
    for i, frame in enumerate(frames):
        reply = analyzer.analyze(FatigueRequest("empty", False, float(i), frame))
        assert reply["face_detected"] is False and reply["face_count"] == 0
        assert reply["eyes_closed"] is None and reply["ear"] is None
    metrics = reply["session"]
    assert metrics["closed_s"] == 0 and metrics["observed_s"] == 0 and metrics["perclos"] is None
    # Fast path: only the detector runs (the mesh is skipped).
    started = time.perf_counter()
    for _ in range(10):
        assert engine.detect([frames[0]])[0] == []
    assert (time.perf_counter() - started) / 10 < 0.02


def test_several_faces_counted_and_largest_analysed(engine, settings, astronaut_bgr, astronaut_closed_bgr):
    """Canvas with the open-eyed face large and the closed-eyed face small: count 2, the large one
    (eyes open) is analysed. (The short-range detector wants faces >= ~20 % of the frame width.)"""
    head = (slice(20, 260), slice(110, 350))  # 240x240 around the face
    canvas = np.full((480, 640, 3), 180, np.uint8)
    canvas[40:400, 10:370] = cv2.resize(astronaut_bgr[head], (360, 360))
    canvas[120:360, 390:630] = cv2.resize(astronaut_closed_bgr[head], (240, 240))
    reply = _analyze(engine, settings, canvas)
    assert reply["face_count"] == 2
    assert reply["eyes_closed"] is False
    assert reply["face_box"]["x"] < 370  # the big face on the left
    contour = reply["eye_contours"]["left"]  # eyelid outline in frame pixels, inside the face box
    assert len(contour) == 16 and all(reply["face_box"]["x"] <= x <= 370 for x, _ in contour)


@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_ear_is_scale_invariant(engine, astronaut_bgr, scale):
    base = measure_face(engine.detect([astronaut_bgr])[0][0].points, 512, 512).ear
    resized = cv2.resize(astronaut_bgr, None, fx=scale, fy=scale)
    h, w = resized.shape[:2]
    faces = engine.detect([resized])[0]
    assert len(faces) == 1
    assert measure_face(faces[0].points, w, h).ear == pytest.approx(base, abs=0.04)


def test_small_face_needs_the_full_range_detector_and_a_crop(astronaut_bgr):
    """A ~46 px face in 640x480: the default short-range path finds nothing; with the full-range
    detector the face is found and meshed on a crop around it, with a plausible open-eye EAR."""
    from vigil_fatigue.mediapipe_engine import MediaPipeFaceMeshEngine

    canvas = np.full((480, 640, 3), 150, np.uint8)
    canvas[100:356, 300:556] = cv2.resize(astronaut_bgr, (256, 256), interpolation=cv2.INTER_AREA)
    short_range = MediaPipeFaceMeshEngine(detection_model=0)
    full_range = MediaPipeFaceMeshEngine(detection_model=1)
    try:
        assert short_range.detect([canvas])[0] == []
        faces = full_range.detect([canvas])[0]
    finally:
        short_range.close()
        full_range.close()
    assert len(faces) == 1
    x, y, w, h = faces[0].box
    assert 370 < x < 410 and 115 < y < 155 and 35 < w < 60  # where the face was pasted
    assert faces[0].score is not None
    assert 0.25 < measure_face(faces[0].points, 640, 480).ear < 0.42
