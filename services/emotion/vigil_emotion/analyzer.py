"""One frame -> faces with expression probabilities: detect, crop, classify all faces in one batch."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

from .classifier import ExpressionClassifier
from .faces import FaceBox, HaarFaceDetector, crop_faces
from .settings import EmotionSettings


@dataclass(frozen=True, slots=True)
class FaceExpression:
    box: FaceBox
    probabilities: np.ndarray  # one per classifier label, sums to 1


@dataclass(frozen=True, slots=True)
class FrameAnalysis:
    faces: list[FaceExpression]  # largest first; faces[0] is the primary face
    faces_detected: int  # before the `max_faces` limit


class FrameAnalyzer:
    def __init__(self, classifier: ExpressionClassifier, settings: EmotionSettings):
        self.classifier = classifier
        self.settings = settings
        # cv2.CascadeClassifier is not documented as thread-safe: one per worker thread.
        self._local = threading.local()
        self._detector()  # load the cascade now, so a broken OpenCV install fails at start-up

    def _detector(self) -> HaarFaceDetector:
        detector = getattr(self._local, "detector", None)
        if detector is None:
            s = self.settings
            detector = HaarFaceDetector(
                scale_factor=s.detector_scale_factor,
                min_neighbors=s.detector_min_neighbors,
                min_face_size=s.min_face_size,
                min_score=s.detector_min_score,
            )
            self._local.detector = detector
        return detector

    def analyze_many(self, frames: list[np.ndarray]) -> list[FrameAnalysis]:
        """Faces of several BGR frames through the classifier in a single forward pass."""
        detected = [self._detector().detect(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)) for frame in frames]
        kept = [boxes[: self.settings.max_faces] for boxes in detected]
        offsets = (self.settings.face_offset_x, self.settings.face_offset_y)
        crops = [
            cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
            for frame, boxes in zip(frames, kept, strict=True)
            for crop in crop_faces(frame, boxes, offsets)
        ]
        probabilities = self.classifier.predict(crops)
        results, start = [], 0
        for boxes, all_boxes in zip(kept, detected, strict=True):
            faces = [FaceExpression(box, probabilities[start + i]) for i, box in enumerate(boxes)]
            start += len(boxes)
            results.append(FrameAnalysis(faces=faces, faces_detected=len(all_boxes)))
        return results

    def analyze(self, frame: np.ndarray) -> FrameAnalysis:
        return self.analyze_many([frame])[0]
