"""BlazeFace short-range (MediaPipe face_detection_short_range, 0.10.21) on a converted graph,
batched: all frames of a call go through the detector in one forward pass.

The pre/post-processing reproduces MediaPipe's face detection subgraph: the frame letterboxed
(centred, black padding) to 128x128 RGB in [-1, 1], SSD decoding on the 896 fixed anchors, score
>= min_score, weighted NMS, projection back to frame pixels.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from . import anchors, detection, roi
from .detection import Detection

logger = logging.getLogger(__name__)

MODEL_FILE = "face_detection_short_range.safetensors"  # what `convert` writes for this model
INPUT_SIZE = 128


def check_frames(frames: Sequence[np.ndarray]) -> None:
    for i, frame in enumerate(frames):
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frames[{i}]: expected a BGR uint8 array (H, W, 3)")
        if frame.shape[0] < 1 or frame.shape[1] < 1:
            raise ValueError(f"frames[{i}]: empty frame {frame.shape}")


def detector_inputs(frames: Sequence[np.ndarray]) -> tuple[np.ndarray, list[roi.Roi]]:
    """BGR frames -> (N, 128, 128, 3) float32 RGB in [-1, 1], and each frame's letterbox."""
    letterboxes = [roi.letterbox_roi(f.shape[1], f.shape[0]) for f in frames]
    boxed = [roi.warp(f, box, INPUT_SIZE, cv2.BORDER_CONSTANT) for f, box in zip(frames, letterboxes, strict=True)]
    return roi.to_rgb_float(boxed, 2.0 / 255.0, -1.0), letterboxes


def decode_outputs(
    regressors: np.ndarray,
    logits: np.ndarray,
    letterboxes: Sequence[roi.Roi],
    anchor_centres: np.ndarray,
    min_score: float,
    max_faces: int,
) -> list[list[Detection]]:
    """Detector outputs (N, 896, 16), (N, 896, 1) -> per frame, detections in frame pixels, best first."""
    results = []
    for i, letterbox in enumerate(letterboxes):
        found = detection.decode(regressors[i], logits[i, :, 0], anchor_centres, INPUT_SIZE, min_score)
        kept = detection.weighted_nms(found)[:max_faces]
        results.append([roi.project_detection(d, letterbox) for d in kept])
    return results


class BlazeFaceDetector:
    """The converted short-range detector on one device; thread-safe (one forward at a time)."""

    name = "mediapipe-blazeface-short-range-0.10.21"

    def __init__(
        self,
        weights: str | Path,
        *,
        device: str = "auto",
        max_faces: int = 4,
        min_score: float = 0.5,
        jit: bool = True,
        warmup_batch_sizes: Sequence[int] = (1, 2, 4, 8),
    ):
        import torch

        from .graph import load_graph
        from .runtime import enable_cpu_fusion, optimize, resolve_device

        if max_faces < 1:
            raise ValueError("max_faces must be >= 1")
        if not 0.0 < min_score < 1.0:
            raise ValueError("min_score must be in (0, 1)")
        self._torch = torch
        self.device = resolve_device(device)
        self.max_faces = max_faces
        self.min_score = min_score
        weights = Path(weights)
        model = load_graph(weights / MODEL_FILE if weights.is_dir() else weights).to(self.device)
        if jit:
            if self.device.type == "cpu":
                enable_cpu_fusion()
            model = optimize(model, torch.zeros(2, INPUT_SIZE, INPUT_SIZE, 3, device=self.device))
        self._model = model
        self._anchors = anchors.generate_anchors(anchors.FACE_DETECTION_SHORT_RANGE)
        self._lock = threading.Lock()
        self._warm_up(warmup_batch_sizes)

    def _warm_up(self, batch_sizes: Sequence[int]) -> None:
        # TorchScript profiles and fuses on the first calls at each batch size: pay that here.
        started = time.perf_counter()
        for batch in batch_sizes:
            for _ in range(3):
                self._run(np.zeros((batch, INPUT_SIZE, INPUT_SIZE, 3), np.float32))
        logger.info(
            "blazeface warm-up for batch sizes %s took %.2f s", list(batch_sizes), time.perf_counter() - started
        )

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        torch = self._torch
        with self._lock, torch.inference_mode():
            outputs = self._model(torch.from_numpy(batch).to(self.device))
            return [o.float().cpu().numpy() for o in outputs]

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Faces per BGR frame in frame pixels (box x0, y0, x1, y1; 6 keypoints: right eye, left
        eye, nose tip, mouth, right ear, left ear), best first, at most `max_faces`."""
        check_frames(frames)
        if not frames:
            return []
        inputs, letterboxes = detector_inputs(frames)
        regressors, logits = self._run(inputs)
        return decode_outputs(regressors, logits, letterboxes, self._anchors, self.min_score, self.max_faces)
