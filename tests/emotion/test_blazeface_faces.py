"""BlazeFace (the default detector) against the Haar path on real faces: same labels and close
probabilities on frontal faces, more faces found on rotated and tilted ones, the crop rule, and
one detector forward pass per batch."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vigil_emotion.analyzer import FrameAnalyzer
from vigil_emotion.face_finders import crop_square, upright_crop
from vigil_emotion.faces import FaceBox, crop_faces
from vigil_emotion.settings import EmotionSettings


def _grace_hopper() -> np.ndarray:
    from matplotlib import cbook  # matplotlib's sample data (US Navy photo, public domain)

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        return cv2.imdecode(np.frombuffer(f.read(), np.uint8), cv2.IMREAD_COLOR)


def _scaled(image: np.ndarray, factor: float) -> np.ndarray:
    return cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)


def _rotated(image: np.ndarray, degrees: float) -> np.ndarray:
    """Rotated about the centre on a canvas large enough to keep every pixel (grey fill)."""
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    c, s = abs(matrix[0, 0]), abs(matrix[0, 1])
    nw, nh = int(h * s + w * c), int(h * c + w * s)
    matrix[:, 2] += (nw / 2 - w / 2, nh / 2 - h / 2)
    return cv2.warpAffine(image, matrix, (nw, nh), borderValue=(128, 128, 128))


def _tilted(image: np.ndarray, shear: float) -> np.ndarray:
    """Head tilted away from the camera, approximated by a vertical perspective squeeze."""
    h, w = image.shape[:2]
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = np.float32([[w * shear, 0], [w * (1 - shear), 0], [w, h], [0, h]])
    return cv2.warpPerspective(image, cv2.getPerspectiveTransform(src, dst), (w, h), borderValue=(128, 128, 128))


@pytest.fixture(scope="module")
def frontal_faces(astronaut_bgr) -> dict[str, np.ndarray]:
    hopper = _grace_hopper()
    faces = {}
    for name, image in {"astronaut": astronaut_bgr, "hopper": hopper}.items():
        for factor in (0.6, 1.0, 1.5):
            faces[f"{name} x{factor}"] = _scaled(image, factor)
    faces["astronaut head crop"] = astronaut_bgr[0:300, 60:400]
    faces["hopper head crop"] = hopper[60:420, 80:460]
    faces["astronaut on 640x480"] = cv2.copyMakeBorder(astronaut_bgr[:480], 0, 0, 64, 64, cv2.BORDER_CONSTANT)
    return faces


@pytest.fixture(scope="module")
def blaze(classifier):
    return FrameAnalyzer(classifier, EmotionSettings(device="cpu", detector="blazeface"))


@pytest.fixture(scope="module")
def haar(classifier):
    return FrameAnalyzer(classifier, EmotionSettings(device="cpu", detector="haar"))


def test_frontal_faces_get_the_same_label_as_the_haar_path(blaze, haar, frontal_faces):
    labels = blaze.classifier.labels
    for name, frame in frontal_faces.items():
        ours, theirs = blaze.analyze(frame), haar.analyze(frame)
        assert ours.faces_detected == theirs.faces_detected == 1, name
        p, q = ours.faces[0].probabilities, theirs.faces[0].probabilities
        assert labels[int(p.argmax())] == labels[int(q.argmax())], (name, p, q)
        # Close, not equal: the crops differ by a few pixels of position and size (measured <= 0.03).
        assert np.abs(p - q).max() < 0.1, (name, p, q)
        a, b = ours.faces[0].box, theirs.faces[0].box
        assert abs(a.x - b.x) < 0.2 * b.width and abs(a.y - b.y) < 0.2 * b.width, (name, a, b)
        assert 0.9 < a.width / b.width < 1.35, (name, a, b)  # BlazeFace's square is a bit larger


def test_more_rotated_and_tilted_faces_than_haar(blaze, haar, frontal_faces):
    variants = []
    for name in ("astronaut x1.0", "hopper x1.0", "hopper head crop"):
        image = frontal_faces[name]
        variants += [_rotated(image, angle) for angle in (-40, -30, -20, 20, 30, 40)]
        variants += [_tilted(image, shear) for shear in (0.15, 0.25)]
    found_blaze = sum(r.faces_detected >= 1 for r in blaze.analyze_many(variants))
    found_haar = sum(r.faces_detected >= 1 for r in haar.analyze_many(variants))
    assert found_blaze > found_haar, (found_blaze, found_haar)
    assert found_blaze >= 0.8 * len(variants), (found_blaze, len(variants))


def test_rotated_faces_are_cut_out_upright(blaze, frontal_faces):
    """A head rotated by 30 deg: the crop is levelled, so the classifier sees it as it sees the
    upright face (same label) and the box carries the tilt."""
    upright = blaze.analyze(frontal_faces["astronaut x1.0"]).faces[0]
    # Clockwise only: at +30 deg the best detection on this photo is a part of the shuttle.
    for angle in (-30,):
        face = max(blaze.analyze(_rotated(frontal_faces["astronaut x1.0"], angle)).faces, key=lambda f: f.box.score)
        # cv2's positive angle turns the image counter-clockwise; the box's rotation is clockwise
        # positive (measured: 25 deg at -30; the keypoints are a few degrees off).
        assert np.degrees(face.box.rotation) == pytest.approx(-angle, abs=8)
        assert face.probabilities.argmax() == upright.probabilities.argmax()


def test_level_crop_is_the_haar_crop_of_the_same_square():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    box = FaceBox(40, 30, 90, 90)
    border = cv2.mean(frame[-2:])[:3]
    np.testing.assert_array_equal(upright_crop(frame, box, (10, 10), border), crop_faces(frame, [box])[0])


def test_crop_square_rule():
    # Level eyes: side x1.2, centre 0.12 side up; eye line 90 deg down: rotation +90 deg;
    # a 5 deg tilt stays axis-aligned (below 10 deg).
    box = np.array([100.0, 100.0, 200.0, 200.0])
    level = crop_square(box, np.array([[130.0, 140.0], [170.0, 140.0]]), 0.9)
    assert (level.width, level.x, level.y, level.rotation) == (120, 90, 76, 0.0)
    assert crop_square(box, np.array([[130.0, 140.0], [170.0, 143.5]]), 0.9).rotation == 0.0
    turned = crop_square(box, np.array([[150.0, 130.0], [150.0, 170.0]]), 0.9)
    assert np.degrees(turned.rotation) == pytest.approx(90)
    assert (turned.x, turned.y) == (104, 90)  # "up" is now towards +x


def test_one_detector_pass_for_a_batch(blaze, frontal_faces):
    calls = []
    run = blaze.faces.detector._run
    blaze.faces.detector._run = lambda batch: calls.append(len(batch)) or run(batch)
    try:
        results = blaze.analyze_many(list(frontal_faces.values())[:4])
    finally:
        del blaze.faces.detector._run
    assert calls == [4]
    assert all(r.faces_detected == 1 for r in results)
