"""TorchLandmarkEngine: MediaPipe Face Mesh with refined eyes, lips and irises (478 points) on
converted models, batched.

One `detect(frames)` call runs the face detector once on all frames and the landmark model once
on all face crops, so a backend that batches requests from many streams gets one forward pass per
model per batch. The pre/post-processing reproduces MediaPipe 0.10.21's face_landmark_front_cpu
graph in static-image mode (roi.py, detection.py). Refinement (`refinement`):
- "attention" (default): MediaPipe's own refine_landmarks=True model, the attention mesh
  (face_landmark_with_attention; its crop ops run as torch ops, attention.py decodes it). Its
  three sub-networks run as one (shared_vision.lanes).
- "iris": the plain 468-point mesh, then the iris model once on all eye crops (two per face),
  as MediaPipe's iris_landmark_left_and_right_from_face_landmarks graph (iris.py).
On CPU the attention mesh runs ahead-of-time compiled when the weights directory holds a library
built for this torch and CPU (shared_vision.aot; the image builds one): ~2x faster than
TorchScript, same outputs to float rounding. `landmark_runtime` says which one runs, and
`compiled_unavailable` why not.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from shared_vision import anchors, aot, blazeface, detection
from shared_vision.graph import load_graph
from shared_vision.lanes import fuse_parallel_branches
from shared_vision.roi import to_rgb_float
from shared_vision.runtime import Unfused, enable_cpu_fusion, optimize, resolve_device

from ..engine import FaceLandmarks, LandmarkEngine, box_from_points
from . import attention, iris, roi

logger = logging.getLogger(__name__)

DETECTOR_FILE = blazeface.MODEL_FILE
LANDMARK_FILE = "face_landmark.safetensors"
IRIS_FILE = "iris_landmark.safetensors"
ATTENTION_MODEL = "face_landmark_with_attention"
ATTENTION_FILE = f"{ATTENTION_MODEL}.safetensors"
REFINEMENTS = ("attention", "iris")
DETECTOR_SIZE = blazeface.INPUT_SIZE
LANDMARK_SIZE = 192
NUM_LANDMARKS = 468
FACE_PRESENCE_THRESHOLD = 0.5  # MediaPipe's ThresholdingCalculator on the face flag


@dataclass(frozen=True)
class _FaceJob:
    frame: int  # index into the detect() call's frames
    region: roi.Roi
    score: float  # detection score


class TorchLandmarkEngine(LandmarkEngine):
    name = "torch-face-mesh-0.10.21"

    def __init__(
        self,
        weights_dir: str | Path,
        *,
        device: str = "auto",
        max_faces: int = 4,
        min_detection_confidence: float = 0.5,
        jit: bool = True,
        cpu_fusion: bool = True,
        warmup: bool = True,
        warmup_batch_sizes: Sequence[int] = (1, 2, 3, 4),
        refine_eyes: bool = True,
        refinement: str = "attention",
        compiled: bool = True,
    ):
        if max_faces < 1:
            raise ValueError("max_faces must be >= 1")
        if not 0.0 < min_detection_confidence < 1.0:
            raise ValueError("min_detection_confidence must be in (0, 1)")
        if refinement not in REFINEMENTS:
            raise ValueError(f"refinement must be one of {REFINEMENTS}")
        self.device = resolve_device(device)
        self.max_faces = max_faces
        self.min_detection_confidence = min_detection_confidence
        weights_dir = Path(weights_dir)
        detector = load_graph(weights_dir / DETECTOR_FILE).to(self.device)
        # Refined eye contours: the plain mesh's eyelids barely move when eyes close.
        self.refine_eyes = refine_eyes
        self.refinement = refinement if refine_eyes else None
        self._attention = self.refinement == "attention"
        # The attention mesh compiled ahead of time, when a library fit for this process is there.
        self.landmark_runtime = "torchscript" if jit else "eager"
        self.compiled_unavailable = "not on CPU" if self.device.type != "cpu" else ""
        compiled_landmarks = None
        if self._attention and compiled and self.device.type == "cpu":
            compiled_landmarks, self.compiled_unavailable = aot.load_compiled(weights_dir, ATTENTION_MODEL)
            if compiled_landmarks is None:
                logger.warning("attention mesh not compiled ahead of time, using %s: %s", self.landmark_runtime,
                               self.compiled_unavailable)  # fmt: skip
        elif not compiled:
            self.compiled_unavailable = "off (compiled=False)"
        elif not self._attention:
            self.compiled_unavailable = "only the attention mesh has a compiled form"
        landmarks = None
        if compiled_landmarks is None:
            landmarks = load_graph(weights_dir / (ATTENTION_FILE if self._attention else LANDMARK_FILE)).to(self.device)
            if self._attention:
                # Its lips/eye/iris sub-networks as one set of wider ops (~3x fewer kernel calls).
                example = torch.zeros(1, LANDMARK_SIZE, LANDMARK_SIZE, 3, device=self.device)
                landmarks = fuse_parallel_branches(landmarks, example)
        eyes = load_graph(weights_dir / IRIS_FILE).to(self.device) if self.refinement == "iris" else None
        if self._attention:
            self.name = "torch-face-mesh-attention-0.10.21"
        elif refine_eyes:
            self.name = "torch-face-mesh-iris-0.10.21"
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        elif jit and cpu_fusion:
            enable_cpu_fusion()
        if jit:
            detector = optimize(detector, torch.zeros(2, DETECTOR_SIZE, DETECTOR_SIZE, 3, device=self.device))
            if landmarks is not None:
                landmarks = optimize(landmarks, torch.zeros(2, LANDMARK_SIZE, LANDMARK_SIZE, 3, device=self.device))
                if self._attention and self.device.type == "cpu":
                    landmarks = Unfused(landmarks)  # oneDNN Graph miscomputes the merged lanes (runtime.py)
            if eyes is not None:
                eyes = optimize(eyes, torch.zeros(2, iris.IRIS_INPUT_SIZE, iris.IRIS_INPUT_SIZE, 3, device=self.device))
        if compiled_landmarks is not None:
            landmarks, self.landmark_runtime = compiled_landmarks, "aot-compiled"
        self._detector = detector
        self._landmarks = landmarks
        self._eyes = eyes
        self._anchors = anchors.generate_anchors(anchors.FACE_DETECTION_SHORT_RANGE)
        # The graphs hold no state, but one forward at a time keeps memory bounded and CUDA simple.
        self._lock = threading.Lock()
        if warmup:
            self._warm_up(warmup_batch_sizes)
        logger.info(
            "torch landmark engine on %s (landmarks: %s, cpu_fusion=%s)", self.device, self.landmark_runtime, cpu_fusion
        )

    def _warm_up(self, batch_sizes: Sequence[int]) -> None:
        # The first calls at each batch size pay for allocation, cuDNN autotuning, TorchScript's
        # profiling runs and fusion compiles; paying them here keeps them off live requests.
        started = time.perf_counter()
        for batch in batch_sizes:
            for _ in range(3):
                self._run(self._detector, np.zeros((batch, DETECTOR_SIZE, DETECTOR_SIZE, 3), np.float32))
                self._run(self._landmarks, np.zeros((batch, LANDMARK_SIZE, LANDMARK_SIZE, 3), np.float32))
                if self._eyes is not None:  # two eyes per face
                    size = iris.IRIS_INPUT_SIZE
                    self._run(self._eyes, np.zeros((2 * batch, size, size, 3), np.float32))
        logger.info("warm-up for batch sizes %s took %.1f s", list(batch_sizes), time.perf_counter() - started)

    def _run(self, model, batch: np.ndarray) -> list[np.ndarray]:
        with self._lock, torch.inference_mode():
            if model is None:
                raise RuntimeError("TorchLandmarkEngine is closed")
            outputs = model(torch.from_numpy(batch).to(self.device))
            return [o.float().cpu().numpy() for o in outputs]

    # -- pipeline ------------------------------------------------------------------------------
    def detect(self, frames: Sequence[np.ndarray]) -> list[list[FaceLandmarks]]:
        _check_frames(frames)
        if not frames:
            return []
        jobs = self._face_jobs(frames)
        results: list[list[FaceLandmarks]] = [[] for _ in frames]
        if not jobs:
            return results
        crops = [roi.warp(frames[j.frame], j.region, LANDMARK_SIZE, cv2.BORDER_REPLICATE) for j in jobs]
        outputs = self._run(self._landmarks, to_rgb_float(crops, 1.0 / 255.0))
        if self._attention:
            raw_landmarks, face_flags = attention.refine(outputs)
        else:
            raw_landmarks, face_flags = outputs[0].reshape(len(jobs), NUM_LANDMARKS, 3), outputs[1].reshape(-1)
        presence = 1.0 / (1.0 + np.exp(-face_flags))
        faces: list[tuple[_FaceJob, np.ndarray]] = [
            (job, roi.project_landmarks(raw, job.region, LANDMARK_SIZE))
            for job, raw, present in zip(jobs, raw_landmarks, presence, strict=True)
            if present > FACE_PRESENCE_THRESHOLD  # MediaPipe keeps scores above it
        ]
        if self._eyes is not None and faces:
            refined = self._refine_eyes(frames, faces)
            faces = [(job, points) for (job, _), points in zip(faces, refined, strict=True)]
        for job, points in faces:
            height, width = frames[job.frame].shape[:2]
            results[job.frame].append(
                FaceLandmarks(points=points, box=box_from_points(points, width, height), score=job.score)
            )
        return results

    def _refine_eyes(self, frames: Sequence[np.ndarray], faces: list[tuple[_FaceJob, np.ndarray]]) -> list[np.ndarray]:
        """Both eyes of every face in one iris-model pass; meshes come back with 478 points."""
        eyes = []  # (face, roi, flip) in the order left, right per face
        for k, (_, mesh) in enumerate(faces):
            eyes.append((k, iris.eye_roi(mesh, iris.LEFT_EYE_CORNERS), False))
            eyes.append((k, iris.eye_roi(mesh, iris.RIGHT_EYE_CORNERS), True))
        crops = [iris.crop_eye(frames[faces[k][0].frame], region, flip) for k, region, flip in eyes]
        contours, irises = self._run(self._eyes, to_rgb_float(crops, 1.0 / 255.0))
        decoded = [
            (iris.decode_eye(contour, region, flip), iris.decode_eye(points, region, flip))
            for (_, region, flip), contour, points in zip(eyes, contours, irises, strict=True)
        ]
        return [
            iris.refine_mesh(mesh, decoded[2 * k][0], decoded[2 * k + 1][0], decoded[2 * k][1], decoded[2 * k + 1][1])
            for k, (_, mesh) in enumerate(faces)
        ]

    def detect_faces(self, frames: Sequence[np.ndarray]) -> list[list[detection.Detection]]:
        """Face detections per frame in frame pixels (box x0, y0, x1, y1; 6 keypoints), best
        first, at most `max_faces`: one detector forward pass for all frames."""
        _check_frames(frames)
        if not frames:
            return []
        inputs, letterboxes = blazeface.detector_inputs(frames)
        regressors, logits = self._run(self._detector, inputs)
        return blazeface.decode_outputs(
            regressors, logits, letterboxes, self._anchors, self.min_detection_confidence, self.max_faces
        )

    def _face_jobs(self, frames: Sequence[np.ndarray]) -> list[_FaceJob]:
        jobs = []
        for i, detections in enumerate(self.detect_faces(frames)):
            rois = [roi.face_roi(d) for d in detections]
            jobs.extend(_FaceJob(i, rois[k], detections[k].score) for k in roi.drop_duplicate_rois(rois))
        return jobs

    def close(self) -> None:
        with self._lock:
            self._detector = None
            self._landmarks = None
            self._eyes = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


_check_frames = blazeface.check_frames
