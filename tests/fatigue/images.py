"""Real test images: the astronaut photo (skimage, public domain), its rotations and scales, and a
closed-eye version painted from landmarks."""

from __future__ import annotations

import cv2
import numpy as np

from vigil_fatigue.geometry import LEFT_EYE, LEFT_EYE_CONTOUR, RIGHT_EYE, RIGHT_EYE_CONTOUR


def astronaut_bgr() -> np.ndarray:
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def rotated(image: np.ndarray, degrees: float) -> np.ndarray:
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2.0, height / 2.0), degrees, 1.0)
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def scaled(image: np.ndarray, factor: float) -> np.ndarray:
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, None, fx=factor, fy=factor, interpolation=interpolation)


def close_eyes(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The eye openings (mesh eye contours) inpainted with the surrounding skin, plus a dark lid
    line along each lower lid."""
    mask = np.zeros(image.shape[:2], np.uint8)
    for contour in (RIGHT_EYE_CONTOUR, LEFT_EYE_CONTOUR):
        cv2.fillPoly(mask, [np.round(points[list(contour), :2]).astype(np.int32)], 255)
    mask = cv2.dilate(mask, np.ones((5, 5), np.uint8))
    closed = cv2.inpaint(image, mask, 5, cv2.INPAINT_TELEA)
    for corner_out, _u1, _u2, corner_in, low2, low1 in (RIGHT_EYE, LEFT_EYE):
        lid = np.round(points[[corner_out, low1, low2, corner_in], :2]).astype(np.int32)
        cv2.polylines(closed, [lid], False, (40, 40, 60), 2, cv2.LINE_AA)
    return closed


def two_faces(image: np.ndarray) -> np.ndarray:
    """Two heads side by side: the face crop of the photo and a tilted copy (480 x 240)."""
    face = image[20:260, 110:350]
    return np.ascontiguousarray(np.hstack([face, rotated(face, -10)]))


def variants(image: np.ndarray) -> dict[str, np.ndarray]:
    """The photo as given, rotated in the image plane and rescaled."""
    out = {"original": image}
    for degrees in (-30, -15, 15, 30):
        out[f"rotated_{degrees}"] = rotated(image, degrees)
    for factor in (0.5, 0.75, 1.5):
        out[f"scaled_{factor}"] = scaled(image, factor)
    return out
