"""Anchors, decoding, weighted NMS and ROI maths on hand-made inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared_vision import anchors, detection
from shared_vision.tflite_convert import same_padding
from vigil_fatigue.torch_engine import roi


def test_short_range_anchors():
    centres = anchors.generate_anchors(anchors.FACE_DETECTION_SHORT_RANGE)
    assert centres.shape == (896, 2)
    # 16x16 cells with 2 anchors (stride 8), then 8x8 cells with 6 (three stride-16 layers).
    assert np.allclose(centres[0], centres[1]) and np.allclose(centres[0], [0.5 / 16, 0.5 / 16])
    assert np.allclose(centres[2], [1.5 / 16, 0.5 / 16])
    assert np.allclose(centres[512], [0.5 / 8, 0.5 / 8]) and np.allclose(centres[517], centres[512])
    assert np.allclose(centres[-1], [7.5 / 8, 7.5 / 8])


def _regressors(n: int) -> np.ndarray:
    return np.zeros((n, 16), np.float32)


def test_decode_offsets_relative_to_anchor_and_filters_scores():
    centres = np.array([[0.25, 0.5], [0.75, 0.5], [0.5, 0.5]], np.float32)
    raw = _regressors(3)
    raw[0, :4] = [12.8, -6.4, 32.0, 64.0]  # dx = 0.1, dy = -0.05, w = 0.25, h = 0.5 (of 128)
    raw[0, 4:6] = [-12.8, 0.0]  # first keypoint 0.1 left of the anchor
    logits = np.array([2.0, -2.0, 200.0], np.float32)  # 0.88, 0.12 (dropped), clipped to 100
    found = detection.decode(raw, logits, centres, 128, min_score=0.5)
    assert len(found) == 2
    first = found[0]
    assert first.score == pytest.approx(1 / (1 + math.exp(-2)))
    assert np.allclose(first.box, [0.35 - 0.125, 0.45 - 0.25, 0.35 + 0.125, 0.45 + 0.25])
    assert np.allclose(first.keypoints[0], [0.15, 0.5]) and np.allclose(first.keypoints[1], [0.25, 0.5])
    assert found[1].score == pytest.approx(1.0)


def test_decode_drops_negative_sizes():
    raw = _regressors(1)
    raw[0, 2] = -10.0
    assert detection.decode(raw, np.array([5.0]), np.array([[0.5, 0.5]]), 128, 0.5) == []


def _det(box, score, kp=0.0):
    return detection.Detection(np.array(box, float), np.full((6, 2), kp), score)


def test_weighted_nms_blends_overlaps_and_keeps_the_rest():
    a = _det([0.0, 0.0, 1.0, 1.0], 0.9, kp=1.0)
    b = _det([0.1, 0.0, 1.1, 1.0], 0.6, kp=2.0)  # IoU 0.82 with a
    c = _det([2.0, 2.0, 3.0, 3.0], 0.7)  # disjoint
    kept = detection.weighted_nms([b, c, a])
    assert [k.score for k in kept] == [0.9, 0.7]
    assert np.allclose(kept[0].box, [0.04, 0.0, 1.04, 1.0])  # (0.9 * 0 + 0.6 * 0.1) / 1.5
    assert np.allclose(kept[0].keypoints, 1.4)
    assert np.allclose(kept[1].box, c.box)


def test_weighted_nms_threshold_is_exclusive():
    a = _det([0.0, 0.0, 1.0, 1.0], 0.9)
    b = _det([0.5, 0.0, 1.5, 1.0], 0.8)  # IoU exactly 1/3 > 0.3 -> merged
    c = _det([0.6, 0.0, 1.6, 1.0], 0.8)  # IoU 0.25 -> a face of its own
    assert len(detection.weighted_nms([a, b])) == 1
    assert len(detection.weighted_nms([a, c])) == 2
    assert detection.iou(a.box, _det([5, 5, 6, 6], 0.1).box) == 0.0


def _pairwise_nms(detections, iou_threshold=detection.NMS_IOU):
    """The weighted NMS as first written, one iou() call per pair: the reference for the array form."""
    remaining = sorted(detections, key=lambda d: d.score, reverse=True)
    kept = []
    while remaining:
        top = remaining[0]
        cluster = [d for d in remaining if detection.iou(d.box, top.box) > iou_threshold]
        rest = [d for d in remaining if detection.iou(d.box, top.box) <= iou_threshold]
        if cluster:
            weights = np.array([d.score for d in cluster])
            box = sum(w * d.box for w, d in zip(weights, cluster, strict=True)) / weights.sum()
            points = sum(w * d.keypoints for w, d in zip(weights, cluster, strict=True)) / weights.sum()
            top = detection.Detection(box, points, top.score)
        kept.append(top)
        if len(rest) == len(remaining):
            break
        remaining = rest
    return kept


_coordinate = st.floats(0.0, 1.0, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(_coordinate, _coordinate, st.floats(0.0, 0.5), st.floats(0.0, 0.5), st.floats(0.01, 1.0),
                  _coordinate),
        max_size=25,
    )
)  # fmt: skip
def test_weighted_nms_equals_the_pairwise_form(boxes):
    """Clusters, blends and order as the pairwise form, zero-size boxes included (width or height
    0.0 is drawn often)."""
    found = [_det([x, y, x + w, y + h], score, kp) for x, y, w, h, score, kp in boxes]
    got, expected = detection.weighted_nms(found), _pairwise_nms(found)
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g.score == e.score
        assert np.allclose(g.box, e.box, rtol=1e-12, atol=1e-12)
        assert np.allclose(g.keypoints, e.keypoints, rtol=1e-12, atol=1e-12)


def test_face_roi_is_square_scaled_and_level_with_the_eyes():
    keypoints = np.zeros((6, 2))
    keypoints[0], keypoints[1] = (40.0, 50.0), (80.0, 50.0)  # level eyes
    det = detection.Detection(np.array([20.0, 30.0, 100.0, 90.0]), keypoints, 0.9)
    level = roi.face_roi(det)
    assert (level.cx, level.cy, level.width, level.height) == (60.0, 60.0, 120.0, 120.0)
    assert level.rotation == pytest.approx(0.0)
    keypoints[1] = (80.0, 90.0)  # second eye lower in the image: head tilted clockwise
    tilted = roi.face_roi(detection.Detection(det.box, keypoints, 0.9))
    assert tilted.rotation == pytest.approx(math.atan2(40.0, 40.0))


def test_landmark_projection_inverts_the_warp():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    region = roi.Roi(150.0, 90.0, 80.0, 80.0, rotation=0.4)
    crop = roi.warp(image, region, 64, border=0)
    # A crop pixel centre maps back to the frame where the warp sampled it.
    raw = np.array([[10.0, 20.0, 5.0], [32.0, 32.0, 0.0]])
    frame_points = roi.project_landmarks(raw, region, 64)
    assert np.allclose(frame_points[1, :2], [150.0, 90.0])
    x, y = np.round(frame_points[0, :2]).astype(int)
    assert np.abs(crop[20, 10].astype(int) - image[y, x].astype(int)).max() < 80  # same neighbourhood
    assert frame_points[0, 2] == pytest.approx(5.0 / 64 * 80.0)


def test_letterbox_and_detection_projection():
    box = roi.letterbox_roi(400, 200)
    assert (box.cx, box.cy, box.width, box.height) == (200.0, 100.0, 400.0, 400.0)
    det = detection.Detection(np.array([0.25, 0.25, 0.75, 0.75]), np.full((6, 2), 0.5), 0.8)
    projected = roi.project_detection(det, box)
    assert np.allclose(projected.box, [100.0, 0.0, 300.0, 200.0])
    assert np.allclose(projected.keypoints, [200.0, 100.0])


def test_duplicate_rois_keep_the_later_one():
    rois = [roi.Roi(50, 50, 100, 100), roi.Roi(55, 50, 100, 100), roi.Roi(300, 300, 100, 100)]
    assert roi.drop_duplicate_rois(rois) == [1, 2]


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [(128, 5, 2, (1, 2)), (64, 3, 2, (0, 1)), (64, 3, 1, (1, 1)), (3, 3, 3, (0, 0)), (7, 1, 1, (0, 0))],
)
def test_tflite_same_padding_puts_the_extra_pixel_after(size, kernel, stride, expected):
    assert same_padding(size, kernel, stride, 1) == expected


def test_to_rgb_float_is_the_plain_conversion():
    from shared_vision import roi as shared_roi

    rng = np.random.default_rng(5)
    images = [rng.integers(0, 256, (7, 9, 3), dtype=np.uint8) for _ in range(3)]
    plain = np.stack([image[:, :, ::-1] for image in images]).astype(np.float32)
    assert np.array_equal(shared_roi.to_rgb_float(images, 1.0 / 255.0), plain * np.float32(1.0 / 255.0))
    detector = plain * np.float32(2.0 / 255.0) - np.float32(1.0)
    assert np.array_equal(shared_roi.to_rgb_float(images, 2.0 / 255.0, -1.0), detector)
