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


def weighted_nms(detections: list[Detection], iou_threshold: float = NMS_IOU) -> list[Detection]:
    """Highest score first; each kept face is the score-weighted mean of the boxes and keypoints
    overlapping it by more than `iou_threshold` (those are then removed); it keeps the top score."""
    remaining = sorted(detections, key=lambda d: d.score, reverse=True)
    kept = []
    while remaining:
        top = remaining[0]
        cluster = [d for d in remaining if iou(d.box, top.box) > iou_threshold]
        rest = [d for d in remaining if iou(d.box, top.box) <= iou_threshold]
        if cluster:
            weights = np.array([d.score for d in cluster])
            total = weights.sum()
            box = sum(w * d.box for w, d in zip(weights, cluster, strict=True)) / total
            keypoints = sum(w * d.keypoints for w, d in zip(weights, cluster, strict=True)) / total
            top = Detection(box, keypoints, top.score)
        kept.append(top)
        if len(rest) == len(remaining):
            break
        remaining = rest
    return kept
