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


def _eye_mask(image: np.ndarray, points: np.ndarray, grow: int = 5) -> np.ndarray:
    mask = np.zeros(image.shape[:2], np.uint8)
    for contour in (RIGHT_EYE_CONTOUR, LEFT_EYE_CONTOUR):
        cv2.fillPoly(mask, [np.round(points[list(contour), :2]).astype(np.int32)], 255)
    return cv2.dilate(mask, np.ones((grow, grow), np.uint8))


def close_eyes_blurred(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Eyes shut, out of focus: the openings inpainted with skin, a lid line along the lower lid,
    then the eye regions blurred (sigma 2 px) as a defocused or moving camera shows them."""
    closed = close_eyes(image, points)
    blurred = cv2.GaussianBlur(closed, (0, 0), 2.0)
    region = _eye_mask(image, points, grow=15) > 0
    closed[region] = blurred[region]
    return closed


def close_eyes_mid_lid(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Eyes shut with the lid crease halfway up the former opening (upper lid lowered to mid-eye
    rather than the lower lid raised)."""
    closed = cv2.inpaint(image, _eye_mask(image, points), 5, cv2.INPAINT_TELEA)
    for corner_out, up1, up2, corner_in, low2, low1 in (RIGHT_EYE, LEFT_EYE):
        xy = points[:, :2]
        mid1, mid2 = (xy[up1] + xy[low1]) / 2.0, (xy[up2] + xy[low2]) / 2.0
        lid = np.round(np.array([xy[corner_out], mid1, mid2, xy[corner_in]])).astype(np.int32)
        cv2.polylines(closed, [lid], False, (40, 40, 60), 2, cv2.LINE_AA)
    return closed


def shift_irises(image: np.ndarray, points: np.ndarray, dx: float, dy: float = 0.0) -> np.ndarray:
    """The content of both eye openings moved by (dx, dy) px inside unchanged lids: the irises look
    elsewhere, the eyelids and the head stay."""
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    moved = cv2.warpAffine(image, matrix, image.shape[1::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    mask = np.zeros(image.shape[:2], np.uint8)
    for contour in (RIGHT_EYE_CONTOUR, LEFT_EYE_CONTOUR):
        cv2.fillPoly(mask, [np.round(points[list(contour), :2]).astype(np.int32)], 255)
    # The sclera that the iris uncovers is filled from the moved image's own sclera (reflected).
    out = image.copy()
    out[mask > 0] = moved[mask > 0]
    return out


def yawed(image: np.ndarray, degrees: float) -> np.ndarray:
    """A perspective warp that foreshortens one side of the image, as a head turned by about
    `degrees` around the vertical axis looks to a camera (a planar approximation)."""
    height, width = image.shape[:2]
    shrink = height * 0.5 * np.sin(np.radians(abs(degrees))) * 0.5
    src = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    dst = src.copy()
    if degrees > 0:  # the image's right side moves away
        dst[1, 1] += shrink
        dst[2, 1] -= shrink
    else:
        dst[0, 1] += shrink
        dst[3, 1] -= shrink
    matrix = cv2.getPerspectiveTransform(src, dst)
    return cv2.warpPerspective(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def grace_hopper_bgr() -> np.ndarray:
    """Grace Hopper's portrait (US Navy photo, public domain) shipped with matplotlib's sample data."""
    from matplotlib import cbook

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        data = np.frombuffer(f.read(), np.uint8)
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


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
