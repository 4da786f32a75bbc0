"""SSD anchors as MediaPipe's SsdAnchorsCalculator generates them (fixed-size anchors)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SsdAnchorOptions:
    input_size: int  # square model input, pixels
    strides: tuple[int, ...]
    min_scale: float  # anchor scales only size non-fixed anchors; kept to document the source
    max_scale: float
    anchor_offset: float = 0.5
    aspect_ratios: tuple[float, ...] = (1.0,)
    interpolated_scale_aspect_ratio: float = 1.0


# mediapipe/modules/face_detection/face_detection_short_range (read from the expanded graph of
# mediapipe 0.10.21's face_landmark_front_cpu): 16x16x2 + 8x8x6 = 896 anchors.
FACE_DETECTION_SHORT_RANGE = SsdAnchorOptions(
    input_size=128, strides=(8, 16, 16, 16), min_scale=0.1484375, max_scale=0.75
)


def anchors_per_cell(options: SsdAnchorOptions, first_layer: int, last_layer: int) -> int:
    """Anchors at each feature-map cell for the layers [first, last) that share one stride."""
    per_layer = len(options.aspect_ratios) + (1 if options.interpolated_scale_aspect_ratio > 0 else 0)
    return per_layer * (last_layer - first_layer)


def generate_anchors(options: SsdAnchorOptions) -> np.ndarray:
    """(N, 2) float32 anchor centres (x, y) in [0, 1]; with fixed anchor size every anchor is 1x1."""
    centres = []
    layer = 0
    n = len(options.strides)
    while layer < n:
        last = layer
        while last < n and options.strides[last] == options.strides[layer]:
            last += 1
        per_cell = anchors_per_cell(options, layer, last)
        side = math.ceil(options.input_size / options.strides[layer])
        for y in range(side):
            for x in range(side):
                centre = ((x + options.anchor_offset) / side, (y + options.anchor_offset) / side)
                centres.extend([centre] * per_cell)
        layer = last
    return np.asarray(centres, dtype=np.float32)
