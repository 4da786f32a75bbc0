"""MediaPipe's own outputs in the torch engine's units (frame pixels)."""

from __future__ import annotations

import cv2
import numpy as np


def mp_meshes(face_mesh, bgr: np.ndarray) -> list[np.ndarray]:
    height, width = bgr.shape[:2]
    found = face_mesh.process(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).multi_face_landmarks or []
    return [np.array([(p.x * width, p.y * height, p.z * width) for p in m.landmark]) for m in found]


def mp_detections(face_detection, bgr: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """(box x0, y0, x1, y1; keypoints (6, 2); score) per face, in MediaPipe's order."""
    height, width = bgr.shape[:2]
    out = []
    for d in face_detection.process(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).detections or []:
        rel = d.location_data.relative_bounding_box
        box = np.array(
            [rel.xmin * width, rel.ymin * height, (rel.xmin + rel.width) * width, (rel.ymin + rel.height) * height]
        )
        keypoints = np.array([(k.x * width, k.y * height) for k in d.location_data.relative_keypoints])
        out.append((box, keypoints, float(d.score[0])))
    return out
