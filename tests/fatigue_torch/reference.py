"""MediaPipe's own outputs in the torch engine's units (frame pixels)."""

from __future__ import annotations

import math

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


def mp_eye_contours(bgr: np.ndarray, mesh: np.ndarray, interpreter) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe 0.10.21's iris pipeline written out step by step in its own normalized
    coordinates (iris_landmark_left_and_right_from_face_landmarks_cpu.pbtxt and the calculators
    it uses), with iris_landmark.tflite run by the TFLite interpreter: (71, 2) contour points of
    the 33/133 eye and of the 362/263 eye, frame pixels. `mesh`: the 468-point mesh in pixels."""
    height, width = bgr.shape[:2]
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    contours = []
    for (a, b), flip in (((33, 133), False), ((362, 263), True)):
        (x0, y0), (x1, y1) = mesh[a, :2] / (width, height), mesh[b, :2] / (width, height)
        # LandmarksToDetection (box of the two keypoints) -> DetectionsToRects (target angle 0).
        box_w, box_h = abs(x1 - x0), abs(y1 - y0)
        x_center, y_center = min(x0, x1) + box_w / 2, min(y0, y1) + box_h / 2
        angle = -math.atan2(-(y1 - y0) * height, (x1 - x0) * width)
        angle = angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))
        # RectTransformation: square_long, scale 2.3.
        long_side = max(box_w * width, box_h * height)
        rect_w, rect_h = long_side / width * 2.3, long_side / height * 2.3
        # ImageCroppingCalculator (CPU): rounded centre and size, nearest-neighbour warp.
        crop_w, crop_h = int(math.floor(rect_w * width + 0.5)), int(math.floor(rect_h * height + 0.5))
        centre = (math.floor(x_center * width + 0.5), math.floor(y_center * height + 0.5))
        src = cv2.boxPoints((centre, (crop_w, crop_h), angle * 180 / math.pi))
        dst = np.float32([[0, crop_h - 1], [0, 0], [crop_w - 1, 0], [crop_w - 1, crop_h - 1]])
        matrix = cv2.getPerspectiveTransform(src.astype(np.float32), dst)
        crop = cv2.warpPerspective(rgb, matrix, (crop_w, crop_h), flags=0, borderMode=cv2.BORDER_REPLICATE)
        # ImageTransformationCalculator (CPU, FIT 64x64): INTER_AREA when shrinking; flip.
        scale = min(64 / crop_w, 64 / crop_h)
        assert crop_w == crop_h, "eye crops are square"
        tensor = cv2.resize(crop, (64, 64), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        if flip:
            tensor = cv2.flip(tensor, 1)
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], (tensor / 255.0).astype(np.float32)[None])
        interpreter.invoke()
        raw = interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).reshape(71, 3)
        # TensorsToLandmarks (flipped back, normalized) -> LandmarkProjection.
        nx = ((64 - raw[:, 0]) if flip else raw[:, 0]) / 64 - 0.5
        ny = raw[:, 1] / 64 - 0.5
        px = (math.cos(angle) * nx - math.sin(angle) * ny) * rect_w + x_center
        py = (math.sin(angle) * nx + math.cos(angle) * ny) * rect_h + y_center
        contours.append(np.stack([px * width, py * height], axis=1))
    return contours[0], contours[1]
