"""MediaPipe's attention mesh (face_landmark_with_attention.tflite): decoding of its six landmark
tensors into the 478-point refine_landmarks topology, as MediaPipe 0.10.21 does it.

Taken from google-ai-edge/mediapipe modules/face_landmark/tensors_to_face_landmarks_with_attention.pbtxt
(LandmarksRefinementCalculator): the 468-point mesh keeps its x, y, z; the lips (80 points) and the
eye regions (71 points each) replace the mesh's x, y and keep its z; the irises (5 points each,
468-472 then 473-477) get x, y from the model and z = the mean z of their eye's 16 contour points.
All coordinates are in the 192x192 model input's pixels (the crop), ready for project_landmarks.
"""

from __future__ import annotations

import numpy as np

from .iris import LEFT_EYE_REFINED_INDICES, RIGHT_EYE_REFINED_INDICES

INPUT_SIZE = 192
NUM_MESH = 468
NUM_REFINED = 478
# fmt: off
LIPS_REFINED_INDICES = (
    61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291,  # lower outer
    185, 40, 39, 37, 0, 267, 269, 270, 409,  # upper outer (excluding corners)
    78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308,  # lower inner
    191, 80, 81, 82, 13, 312, 311, 310, 415,  # upper inner (excluding corners)
    76, 77, 90, 180, 85, 16, 315, 404, 320, 307, 306,  # lower semi-outer
    184, 74, 73, 72, 11, 302, 303, 304, 408,  # upper semi-outer (excluding corners)
    62, 96, 89, 179, 86, 15, 316, 403, 319, 325, 292,  # lower semi-inner
    183, 42, 41, 38, 12, 268, 271, 272, 407,  # upper semi-inner (excluding corners)
)
# fmt: on
# The eye contour (lower 9 + upper 7) is the first 16 of each eye's refined indices.
LEFT_IRIS_Z_FROM = LEFT_EYE_REFINED_INDICES[:16]
RIGHT_IRIS_Z_FROM = RIGHT_EYE_REFINED_INDICES[:16]

_LIPS = np.array(LIPS_REFINED_INDICES)
_LEFT_EYE = np.array(LEFT_EYE_REFINED_INDICES)
_RIGHT_EYE = np.array(RIGHT_EYE_REFINED_INDICES)


def refine(outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The model's outputs for a batch of B crops -> ((B, 478, 3) points in input pixels,
    (B,) face-flag logits). Outputs in the model's order: mesh, lips, left eye, right eye, left
    iris, right iris, face flag."""
    mesh, lips, left_eye, right_eye, left_iris, right_iris, flag = outputs
    batch = mesh.shape[0]
    points = np.empty((batch, NUM_REFINED, 3), np.float64)
    points[:, :NUM_MESH] = mesh.reshape(batch, NUM_MESH, 3)
    points[:, _LIPS, :2] = lips.reshape(batch, -1, 2)
    points[:, _LEFT_EYE, :2] = left_eye.reshape(batch, -1, 2)
    points[:, _RIGHT_EYE, :2] = right_eye.reshape(batch, -1, 2)
    points[:, 468:473, :2] = left_iris.reshape(batch, -1, 2)
    points[:, 473:478, :2] = right_iris.reshape(batch, -1, 2)
    points[:, 468:473, 2] = points[:, list(LEFT_IRIS_Z_FROM), 2].mean(axis=1, keepdims=True)
    points[:, 473:478, 2] = points[:, list(RIGHT_IRIS_Z_FROM), 2].mean(axis=1, keepdims=True)
    return points, flag.reshape(-1)
