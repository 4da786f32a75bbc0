"""LandmarkEngine on MediaPipe Face Mesh (mediapipe 0.10.21: the .tflite models ship in the wheel).

Mode choice: `static_image_mode=True`. One service process serves many sessions, and in video mode
a FaceMesh graph tracks the face of the *previous* frame, whichever session sent it: frames of
session B would be meshed at session A's face position. A graph per session would avoid that but
costs ~80 ms and several MB per session and makes sessions share nothing anyway. Static mode costs
~4 ms per 640x480 frame on one CPU core, well inside a 30 frames/s budget.

A face detector (short-range by default) runs first: it gives the detection score the mesh API
does not expose, and when it finds no face the mesh is skipped (the no-face path costs ~1-2 ms).
Both MediaPipe graphs are not thread-safe, so calls are serialised with a lock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import cv2
import numpy as np

from .engine import FaceLandmarks, LandmarkEngine, box_from_points, box_iou

logger = logging.getLogger(__name__)

# A mesh face is matched to the detection it overlaps most; below this IoU it has no score.
_MIN_MATCH_IOU = 0.2
# Crop around a face the mesh missed in the full frame: this many face-box sides wide.
_CROP_SCALE = 2.0


class MediaPipeFaceMeshEngine(LandmarkEngine):
    name = "mediapipe-face-mesh-0.10.21"

    def __init__(self, *, max_faces: int = 4, min_detection_confidence: float = 0.5, detection_model: int = 0):
        # Imported here so that modules which only need the interface do not pay for mediapipe.
        from mediapipe.python.solutions import face_detection, face_mesh

        self._lock = threading.Lock()
        self._detector = face_detection.FaceDetection(
            model_selection=detection_model, min_detection_confidence=min_detection_confidence
        )
        self._mesh = face_mesh.FaceMesh(
            static_image_mode=True,
            max_num_faces=max_faces,
            refine_landmarks=True,  # attention model: refined eye and lip contours, + 10 iris points
            min_detection_confidence=min_detection_confidence,
        )

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[FaceLandmarks]]:
        return [self._detect_one(frame) for frame in frames]

    def _detect_one(self, frame_bgr: np.ndarray) -> list[FaceLandmarks]:
        height, width = frame_bgr.shape[:2]
        rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
        with self._lock:
            detections = self._detector.process(rgb).detections or []
            if not detections:
                return []
            scored_boxes = [(_detection_box(d, width, height), float(d.score[0])) for d in detections]
            meshes = [_to_pixels(m, width, height) for m in self._mesh.process(rgb).multi_face_landmarks or []]
            if not meshes:
                # The mesh's own detector is short-range: a face the (full-range) detector found
                # but that is small in the frame is meshed on a crop around it instead.
                meshes = self._mesh_on_crop(rgb, max(scored_boxes, key=lambda b: b[0][2] * b[0][3])[0])
                logger.debug("mesh missed %d detected face(s); crop found %d", len(detections), len(meshes))
        faces = []
        for points in meshes:
            box = box_from_points(points, width, height)
            faces.append(FaceLandmarks(points=points, box=box, score=_matched_score(box, scored_boxes)))
        return faces

    def _mesh_on_crop(self, rgb: np.ndarray, box: tuple[float, float, float, float]) -> list[np.ndarray]:
        height, width = rgb.shape[:2]
        side = _CROP_SCALE * max(box[2], box[3])
        cx, cy = box[0] + box[2] / 2.0, box[1] + box[3] / 2.0
        x0, y0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
        x1, y1 = int(min(width, cx + side / 2)), int(min(height, cy + side / 2))
        if x1 - x0 < 8 or y1 - y0 < 8:
            return []
        crop = np.ascontiguousarray(rgb[y0:y1, x0:x1])
        found = self._mesh.process(crop).multi_face_landmarks or []
        meshes = []
        for mesh in found[:1]:
            points = _to_pixels(mesh, x1 - x0, y1 - y0)
            points[:, 0] += x0
            points[:, 1] += y0
            meshes.append(points)
        return meshes

    def close(self) -> None:
        with self._lock:
            self._mesh.close()
            self._detector.close()


def _to_pixels(mesh, width: int, height: int) -> np.ndarray:
    return np.array([(p.x * width, p.y * height, p.z * width) for p in mesh.landmark], dtype=np.float64)


def _detection_box(detection, width: int, height: int) -> tuple[float, float, float, float]:
    rel = detection.location_data.relative_bounding_box
    return rel.xmin * width, rel.ymin * height, rel.width * width, rel.height * height


def _matched_score(box, scored_boxes) -> float | None:
    best_iou, best_score = 0.0, None
    for det_box, score in scored_boxes:
        iou = box_iou(box, det_box)
        if iou > best_iou:
            best_iou, best_score = iou, score
    return best_score if best_iou >= _MIN_MATCH_IOU else None
