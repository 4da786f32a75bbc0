"""Detector output -> face detections: box/keypoint decoding, score filter, weighted NMS.

Mirrors MediaPipe's TensorsToDetectionsCalculator and NonMaxSuppressionCalculator (WEIGHTED,
IoU) with the face_detection_short_range options. Coordinates stay normalised to the detector
input until `project`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCORE_CLIPPING = 100.0
NMS_IOU = 0.3
NUM_KEYPOINTS = 6  # right eye, left eye, nose tip, mouth, right ear tragion, left ear tragion


@dataclass(frozen=True)
class Detection:
    box: np.ndarray  # (4,) xmin, ymin, xmax, ymax, normalised
    keypoints: np.ndarray  # (6, 2) x, y, normalised
    score: float


def decode(
    regressors: np.ndarray, logits: np.ndarray, anchors: np.ndarray, input_size: int, min_score: float
) -> list[Detection]:
    """One image: regressors (896, 16), logits (896,) -> detections with score >= min_score."""
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -SCORE_CLIPPING, SCORE_CLIPPING)))
    keep = np.nonzero(scores >= min_score)[0]
    if keep.size == 0:
        return []
    raw = regressors[keep].astype(np.float64) / input_size
    centres = anchors[keep].astype(np.float64)
    cx, cy = raw[:, 0] + centres[:, 0], raw[:, 1] + centres[:, 1]
    w, h = raw[:, 2], raw[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    keypoints = raw[:, 4 : 4 + 2 * NUM_KEYPOINTS].reshape(-1, NUM_KEYPOINTS, 2) + centres[:, None, :]
    return [
        Detection(boxes[i], keypoints[i], float(scores[k]))
        for i, k in enumerate(keep)
        if boxes[i, 2] >= boxes[i, 0] and boxes[i, 3] >= boxes[i, 1]  # MediaPipe drops negative sizes
    ]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _ious(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """`iou(box, b)` for every row b of `boxes`, at once."""
    iw = np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0])
    ih = np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1])
    inter = iw * ih
    union = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    overlapping = (iw > 0) & (ih > 0) & (union > 0)
    return np.divide(inter, union, out=np.zeros_like(inter), where=overlapping)


def weighted_nms(detections: list[Detection], iou_threshold: float = NMS_IOU) -> list[Detection]:
    """Highest score first; each kept face is the score-weighted mean of the boxes and keypoints
    overlapping it by more than `iou_threshold` (those are then removed); it keeps the top score.
    (Array form: one IoU row per kept face, not one Python call per pair.)"""
    if not detections:
        return []
    ordered = sorted(detections, key=lambda d: d.score, reverse=True)
    boxes = np.array([d.box for d in ordered], dtype=np.float64)
    keypoints = np.array([d.keypoints for d in ordered], dtype=np.float64)
    scores = np.array([d.score for d in ordered], dtype=np.float64)
    remaining = np.arange(len(ordered))
    kept = []
    while remaining.size:
        top = remaining[0]
        in_cluster = _ious(boxes[top], boxes[remaining]) > iou_threshold
        cluster = remaining[in_cluster]
        if cluster.size:
            weights = scores[cluster]
            total = weights.sum()
            box = (weights[:, None] * boxes[cluster]).sum(axis=0) / total
            points = (weights[:, None, None] * keypoints[cluster]).sum(axis=0) / total
            kept.append(Detection(box, points, ordered[top].score))
        else:
            kept.append(ordered[top])
        if not in_cluster.any():
            break
        remaining = remaining[~in_cluster]
    return kept
