"""The real mini-Xception on real faces: detection, fer-style crops, one batched forward pass."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vigil_emotion.analyzer import FrameAnalyzer
from vigil_emotion.settings import EmotionSettings

from .samples import astronaut_canvas_bgr

HAPPY = 3


@pytest.fixture(scope="module", params=["blazeface", "haar"])
def analyzer(classifier, request):
    return FrameAnalyzer(classifier, EmotionSettings(device="cpu", detector=request.param))


def test_astronaut_is_happy(analyzer, astronaut_bgr):
    result = analyzer.analyze(astronaut_bgr)
    assert result.faces_detected == 1
    face = result.faces[0]
    assert analyzer.classifier.labels[int(face.probabilities.argmax())] == "happy"
    assert face.probabilities[HAPPY] > 0.9, face.probabilities  # measured: 0.998
    assert face.probabilities.sum() == pytest.approx(1.0, abs=1e-6)
    # The box is the astronaut's face (upper middle of the 512x512 photo).
    assert 150 < face.box.x < 220 and 40 < face.box.y < 100 and 80 < face.box.width < 120


def test_astronaut_in_a_640x480_jpeg_is_happy(analyzer):
    frame = cv2.imdecode(cv2.imencode(".jpg", astronaut_canvas_bgr())[1], cv2.IMREAD_COLOR)
    result = analyzer.analyze(frame)
    assert len(result.faces) == 1
    assert result.faces[0].probabilities[HAPPY] > 0.9


def test_crop_matches_fers_own_recipe(classifier, astronaut_bgr):
    """fer: grey frame padded by 40 px of the bottom rows' mean, square box + 10 px, resize to 64."""
    from vigil_emotion.faces import HaarFaceDetector, crop_faces

    grey = cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2GRAY)
    box = HaarFaceDetector().detect(grey)[0]
    mean = cv2.mean(grey[-2:])[0]
    padded = cv2.copyMakeBorder(grey, 40, 40, 40, 40, cv2.BORDER_CONSTANT, value=[mean, mean, mean])
    side = max(box.width, box.height)
    x = box.x - (side - box.width) // 2
    y = box.y - (side - box.height) // 2
    fer_face = padded[y - 10 + 40 : y + side + 10 + 40, x - 10 + 40 : x + side + 10 + 40]
    fer_input = (cv2.resize(fer_face, (64, 64)).astype("float32") / 255.0 - 0.5) * 2.0

    crop = cv2.cvtColor(crop_faces(astronaut_bgr, [box])[0], cv2.COLOR_BGR2RGB)
    ours = classifier.processor([crop], return_tensors="np")["pixel_values"][0, 0]
    np.testing.assert_array_equal(ours, fer_input)


def _mosaic(astronaut_bgr: np.ndarray, sizes: list[int]) -> np.ndarray:
    """Several copies of the astronaut's head, each scaled to `size` px, side by side on a grey
    canvas, two per row. Heads, not the whole photo: BlazeFace short-range wants faces of >= ~12 % of the
    frame's long side (it misses the whole-photo copies, ~7 %, that Haar finds)."""
    head = astronaut_bgr[20:260, 110:350]
    cell = max(sizes)
    canvas = np.full((cell * ((len(sizes) + 1) // 2), cell * 2, 3), 180, np.uint8)
    for i, size in enumerate(sizes):  # two per row
        y, x = (i // 2) * cell, (i % 2) * cell
        canvas[y : y + size, x : x + size] = cv2.resize(head, (size, size), interpolation=cv2.INTER_AREA)
    return canvas


def test_every_face_is_classified_largest_first(analyzer, astronaut_bgr):
    frame = _mosaic(astronaut_bgr, [240, 300, 260])
    result = analyzer.analyze(frame)
    assert result.faces_detected == 3
    areas = [f.box.area for f in result.faces]
    assert areas == sorted(areas, reverse=True)
    assert result.faces[0].box.x >= 300 > result.faces[0].box.y  # the largest copy is the second
    for face in result.faces:
        assert face.probabilities[HAPPY] > 0.9


def test_face_limit_keeps_the_largest(classifier, astronaut_bgr):
    limited = FrameAnalyzer(classifier, EmotionSettings(device="cpu", max_faces=2))  # BlazeFace
    result = limited.analyze(_mosaic(astronaut_bgr, [240, 300, 260]))
    assert result.faces_detected == 3 and len(result.faces) == 2
    assert result.faces[0].box.area > result.faces[1].box.area


def test_all_faces_of_a_frame_go_through_one_forward_pass(analyzer, astronaut_bgr):
    batch_sizes = []

    def record(module, args, kwargs, output):
        batch_sizes.append(kwargs["pixel_values"].shape[0])

    handle = analyzer.classifier.model.register_forward_hook(record, with_kwargs=True)
    try:
        analyzer.analyze(_mosaic(astronaut_bgr, [240, 300, 260]))
        several = analyzer.analyze_many([astronaut_bgr, _mosaic(astronaut_bgr, [240, 260])])
    finally:
        handle.remove()
    assert batch_sizes == [3, 3]  # 3 faces of one frame; 1 + 2 faces of two frames
    assert [len(r.faces) for r in several] == [1, 2]
    # Batching does not change a face's result.
    alone = analyzer.analyze(astronaut_bgr)
    np.testing.assert_allclose(several[0].faces[0].probabilities, alone.faces[0].probabilities, atol=1e-6)


def test_shuttle_false_positive_is_filtered_by_score(classifier):
    """Plain Haar (fer's settings) also boxes part of the shuttle in this frame; its score is low."""
    frame = astronaut_canvas_bgr()
    unfiltered = FrameAnalyzer(classifier, EmotionSettings(device="cpu", detector="haar", detector_min_score=0))
    boxes = [f.box for f in unfiltered.analyze(frame).faces]
    assert len(boxes) == 2 and min(b.score for b in boxes) < 2.0
    kept = FrameAnalyzer(classifier, EmotionSettings(device="cpu", detector="haar")).analyze(frame).faces
    assert len(kept) == 1 and kept[0].box.score > 3.0
    assert 240 < kept[0].box.x < 260  # the astronaut's face, not the shuttle at x~344


def test_no_face_gives_no_faces(analyzer):
    rng = np.random.default_rng(3)
    frame = cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), (0, 0), 8)
    result = analyzer.analyze(frame)
    assert result.faces == [] and result.faces_detected == 0
