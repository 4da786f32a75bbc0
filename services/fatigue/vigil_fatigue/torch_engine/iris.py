"""MediaPipe's iris pipeline on the 468-point mesh: eye crops, decoding of the 64x64 iris model and
the refinement of the mesh's eye region (MediaPipe 0.10.21, CPU graphs).

Taken from google-ai-edge/mediapipe:
- modules/iris_landmark/iris_landmark_left_and_right_from_face_landmarks_cpu.pbtxt: the "left" eye
  is bounded by mesh points 33 and 133 (the subject's right eye, on the image's left), the "right"
  one by 362 and 263; both eyes' 71 contour points then update the mesh (UpdateFaceLandmarks).
- modules/iris_landmark/iris_landmark_landmarks_to_roi.pbtxt: LandmarksToDetection ->
  DetectionsToRects (rotation from the first to the second corner, target 0 degrees) ->
  RectTransformation (scale 2.3 x 2.3, square on the long side).
- modules/iris_landmark/iris_landmark_cpu.pbtxt: ImageCropping (BORDER_REPLICATE) ->
  ImageTransformation (64x64, FIT, flipped horizontally for the right eye: the model knows left
  eyes only) -> tensor in [0, 1] -> TensorsToLandmarks (71 eye-contour/brow points, 5 iris
  points, flipped back) -> LandmarkLetterboxRemoval (no padding: the crop is square) ->
  LandmarkProjection.
- calculators/image/image_cropping_calculator.cc (CPU): the centre and size are rounded to whole
  pixels, the rotated rectangle is warped nearest-neighbour onto (0..w-1, 0..h-1);
  calculators/image/image_transformation_calculator.cc (CPU, FIT): cv::resize with INTER_AREA
  when shrinking, INTER_LINEAR when enlarging, then cv::flip.
- graphs/iris_tracking/calculators/update_face_landmarks_calculator.cc:
  kEyeLandmarkIndicesInFaceLandmarks, copied below as LEFT_/RIGHT_EYE_REFINED_INDICES.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .roi import Roi, _normalize_radians, project_landmarks

IRIS_INPUT_SIZE = 64
EYE_ROI_SCALE = 2.3
NUM_EYE_CONTOUR = 71
NUM_IRIS = 5
LEFT_EYE_CORNERS = (33, 133)  # MediaPipe's "left" eye: image left, the subject's right eye
RIGHT_EYE_CORNERS = (362, 263)

# Mesh index of each of the 71 contour points the iris model returns, in the model's order
# (update_face_landmarks_calculator.cc, kEyeLandmarkIndicesInFaceLandmarks: first 71 = left eye).
# fmt: off
LEFT_EYE_REFINED_INDICES = (
    33, 7, 163, 144, 145, 153, 154, 155, 133,  # eye lower contour
    246, 161, 160, 159, 158, 157, 173,  # eye upper contour (excluding corners)
    130, 25, 110, 24, 23, 22, 26, 112, 243,  # halo x2 lower contour
    247, 30, 29, 27, 28, 56, 190,  # halo x2 upper contour (excluding corners)
    226, 31, 228, 229, 230, 231, 232, 233, 244,  # halo x3 lower contour
    113, 225, 224, 223, 222, 221, 189,  # halo x3 upper contour (excluding corners)
    35, 124, 46, 53, 52, 65,  # halo x4 upper contour / eyebrow inner contour
    143, 111, 117, 118, 119, 120, 121, 128, 245,  # halo x5 lower contour
    156, 70, 63, 105, 66, 107, 55, 193,  # halo x5 upper contour / eyebrow outer contour
)
RIGHT_EYE_REFINED_INDICES = (
    263, 249, 390, 373, 374, 380, 381, 382, 362,
    466, 388, 387, 386, 385, 384, 398,
    359, 255, 339, 254, 253, 252, 256, 341, 463,
    467, 260, 259, 257, 258, 286, 414,
    446, 261, 448, 449, 450, 451, 452, 453, 464,
    342, 445, 444, 443, 442, 441, 413,
    265, 353, 276, 283, 282, 295,
    372, 340, 346, 347, 348, 349, 350, 357, 465,
    383, 300, 293, 334, 296, 336, 285, 417,
)
# fmt: on
# With the irises appended, the 478-point order of MediaPipe's refine_landmarks=True output:
# 468-472 the iris of the 33/133 eye (centre first), 473-477 that of the 362/263 eye.
LEFT_IRIS_INDICES = tuple(range(468, 473))
RIGHT_IRIS_INDICES = tuple(range(473, 478))


def eye_roi(points: np.ndarray, corners: tuple[int, int]) -> Roi:
    """The eye crop in frame pixels from the two corner points of the mesh."""
    (x0, y0), (x1, y1) = points[corners[0], :2], points[corners[1], :2]
    rotation = _normalize_radians(-math.atan2(-(y1 - y0), x1 - x0))
    # Box of the two keypoints, squared on its long side, scaled 2.3x, centred between them.
    side = max(abs(x1 - x0), abs(y1 - y0)) * EYE_ROI_SCALE
    return Roi((x0 + x1) / 2.0, (y0 + y1) / 2.0, side, side, rotation)


def _round_half_up(value: float) -> int:
    return int(math.floor(value + 0.5)) if value >= 0 else -int(math.floor(-value + 0.5))  # std::round


def crop_eye(image: np.ndarray, roi: Roi, flip: bool) -> np.ndarray:
    """The 64x64 model input (same dtype and channel order as `image`) as MediaPipe's CPU
    calculators make it: a nearest-neighbour crop at the ROI's own size, then a resize."""
    width, height = max(1, _round_half_up(roi.width)), max(1, _round_half_up(roi.height))
    centre = (float(_round_half_up(roi.cx)), float(_round_half_up(roi.cy)))
    corners = cv2.boxPoints((centre, (float(width), float(height)), math.degrees(roi.rotation)))
    target = np.array([[0, height - 1], [0, 0], [width - 1, 0], [width - 1, height - 1]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(corners.astype(np.float32), target)
    crop = cv2.warpPerspective(image, matrix, (width, height), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
    scale = min(IRIS_INPUT_SIZE / width, IRIS_INPUT_SIZE / height)
    size = (_round_half_up(width * scale), _round_half_up(height * scale))
    resized = cv2.resize(crop, size, interpolation=cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR)
    if size != (IRIS_INPUT_SIZE, IRIS_INPUT_SIZE):  # FIT: letterbox (only for a non-square crop)
        top, left = (IRIS_INPUT_SIZE - size[1]) // 2, (IRIS_INPUT_SIZE - size[0]) // 2
        resized = cv2.copyMakeBorder(
            resized,
            top,
            IRIS_INPUT_SIZE - size[1] - top,
            left,
            IRIS_INPUT_SIZE - size[0] - left,
            cv2.BORDER_REPLICATE,
        )
    return cv2.flip(resized, 1) if flip else resized


def decode_eye(raw: np.ndarray, roi: Roi, flip: bool) -> np.ndarray:
    """Model output (N*3,) in input pixels -> (N, 3) frame pixels (z scaled like x)."""
    points = raw.reshape(-1, 3).astype(np.float64)
    if flip:
        points[:, 0] = IRIS_INPUT_SIZE - points[:, 0]
    return project_landmarks(points, roi, IRIS_INPUT_SIZE)


def refine_mesh(
    mesh: np.ndarray, left_contour: np.ndarray, right_contour: np.ndarray, left_iris: np.ndarray, right_iris: np.ndarray
) -> np.ndarray:
    """The 468-point mesh with its eye region replaced by the iris model's contours, plus the ten
    iris points: MediaPipe's 478-point topology."""
    refined = np.concatenate([mesh[:468], left_iris, right_iris]).astype(np.float64, copy=True)
    refined[list(LEFT_EYE_REFINED_INDICES)] = left_contour
    refined[list(RIGHT_EYE_REFINED_INDICES)] = right_contour
    return refined
