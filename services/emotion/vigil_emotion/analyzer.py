"""One frame -> faces with expression probabilities: detect, crop, classify all faces in one batch."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .classifier import ExpressionClassifier
from .face_finders import FaceFinder, make_face_finder
from .faces import FaceBox
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
    def __init__(self, classifier: ExpressionClassifier, settings: EmotionSettings, faces: FaceFinder | None = None):
        self.classifier = classifier
        self.settings = settings
        # Loaded now (a missing detector model or broken OpenCV fails at start-up); a reload of the
        # classifier passes the finder it already has.
        self.faces = faces if faces is not None else make_face_finder(settings)

    def analyze_many(self, frames: list[np.ndarray]) -> list[FrameAnalysis]:
        """Faces of several BGR frames (the BlazeFace detector in one forward pass), then every
        face through the classifier in a single forward pass."""
        detected = self.faces.find(frames)
        kept = [boxes[: self.settings.max_faces] for boxes in detected]
        offsets = (self.settings.face_offset_x, self.settings.face_offset_y)
        crops = [
            cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
            for frame, boxes in zip(frames, kept, strict=True)
            for crop in self.faces.crops(frame, boxes, offsets)
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
