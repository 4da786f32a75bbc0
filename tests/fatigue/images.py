"""Real test images: the astronaut photo (skimage, public domain) and Grace Hopper's portrait
(matplotlib), rotations, scales and head turns, and closed-eye versions made from landmarks."""

from __future__ import annotations

import cv2
import numpy as np

from vigil_fatigue.geometry import LEFT_EYE_CONTOUR, RIGHT_EYE_CONTOUR


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


# Closed-eye synthesis. A shut eye shows lid skin where the opening was and the lash line where the
# upper lid meets the lower one, i.e. at (just below) the lower lid. Measured on the astronaut and
# Grace Hopper (+ mirrored, 5 poses each; README): a skin-coloured blob with a thin line at the
# lower lid, or a seamlessClone of a small patch, left MediaPipe's refined model reading Hopper's
# eyes at 0.4-0.8 x open; covering the eye up to 0.35 eye widths around it, with skin texture, and
# a lash line ~1/12 eye width thick at 0.3 x the opening below the lower lid reads 0.12-0.46 x.
LID_GROW = 0.35  # mask growth around the eye contour, in eye widths
LID_LINE_THICKNESS = 1 / 12  # in eye widths
LID_LINE_DROP = 0.3  # below the lower lid, in eye openings


def _eye_frame(points: np.ndarray, contour: tuple[int, ...]) -> tuple[np.ndarray, float, np.ndarray, float]:
    """Contour points (corner, 7 lower, corner, 7 upper), eye width, unit normal pointing from
    the upper to the lower lid, and the opening (upper to lower lid) along it."""
    xy = points[list(contour), :2].astype(np.float64)
    axis = xy[8] - xy[0]
    width = float(np.linalg.norm(axis))
    normal = np.array([-axis[1], axis[0]]) / max(width, 1e-6)
    lower, upper = xy[1:8].mean(axis=0), xy[9:16].mean(axis=0)
    if (lower - upper) @ normal < 0:
        normal = -normal
    return xy, width, normal, max(float((lower - upper) @ normal), 1.0)


def _eye_region(shape: tuple[int, ...], xy: np.ndarray, grow: int) -> np.ndarray:
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(xy).astype(np.int32)], 255)
    return cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))


def _skin_below(image: np.ndarray, normal: np.ndarray, distance: float) -> np.ndarray:
    """The image moved so the skin `distance` px below the eye lies over it."""
    shift = -normal * distance
    matrix = np.float32([[1, 0, shift[0]], [0, 1, shift[1]]])
    return cv2.warpAffine(image, matrix, image.shape[1::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _lash_line(image: np.ndarray, original: np.ndarray, xy, width, normal, opening, region) -> np.ndarray:
    """The closed lid's edge: the lower-lid curve moved down by LID_LINE_DROP openings, drawn in
    the eye's own darkest colour (its lashes), anti-aliased and slightly soft."""
    lid = xy[0:9] + normal * opening * LID_LINE_DROP
    thickness = max(2, round(width * LID_LINE_THICKNESS))
    dark = tuple(float(c) for c in np.percentile(original[region > 0].reshape(-1, 3), 3, axis=0))
    curve = [np.round(lid * 4).astype(np.int32)]  # 2 fractional bits
    drawn, coverage = image.copy(), np.zeros(image.shape[:2], np.float32)
    cv2.polylines(drawn, curve, False, dark, thickness, cv2.LINE_AA, shift=2)
    cv2.polylines(coverage, curve, False, 1.0, thickness, cv2.LINE_AA, shift=2)
    alpha = cv2.GaussianBlur(coverage, (0, 0), 0.8)[..., None]
    return np.clip(alpha * drawn + (1 - alpha) * image, 0, 255).astype(np.uint8)


def close_eyes(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Eyes shut, painted: each eye and its surroundings (LID_GROW eye widths) filled with the
    skin around it (inpainting) plus the fine texture of the skin below the eye, feathered in,
    and a lash line just below the former lower lid."""
    out = image.copy()
    for contour in (RIGHT_EYE_CONTOUR, LEFT_EYE_CONTOUR):
        xy, width, normal, opening = _eye_frame(points, contour)
        grow = max(3, round(width * LID_GROW))
        region = _eye_region(image.shape, xy, grow)
        fill = cv2.inpaint(out, region, grow, cv2.INPAINT_TELEA).astype(np.float32)
        skin = _skin_below(out, normal, opening + 2 * grow).astype(np.float32)
        fill += skin - cv2.GaussianBlur(skin, (0, 0), 2.0)  # texture, not colour
        alpha = cv2.GaussianBlur(region.astype(np.float32) / 255.0, (0, 0), max(1.0, grow / 3))[..., None]
        out = np.clip(alpha * fill + (1 - alpha) * out, 0, 255).astype(np.uint8)
        out = _lash_line(out, image, xy, width, normal, opening, region)
    return out


def close_eyes_cloned(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Eyes shut, cloned: the skin below each eye pasted over it with cv2.seamlessClone (Poisson
    blending keeps its texture and matches the surrounding colour), plus the lash line."""
    out = image.copy()
    for contour in (RIGHT_EYE_CONTOUR, LEFT_EYE_CONTOUR):
        xy, width, normal, opening = _eye_frame(points, contour)
        grow = max(3, round(width * LID_GROW))
        region = _eye_region(image.shape, xy, grow)
        x, y, w, h = cv2.boundingRect(region)
        skin = _skin_below(out, normal, opening + 2 * grow)
        out = cv2.seamlessClone(skin, out, region, (x + w // 2, y + h // 2), cv2.NORMAL_CLONE)
        out = _lash_line(out, image, xy, width, normal, opening, region)
    return out


def _eye_mask(image: np.ndarray, points: np.ndarray, grow: int = 5) -> np.ndarray:
    mask = np.zeros(image.shape[:2], np.uint8)
    for contour in (RIGHT_EYE_CONTOUR, LEFT_EYE_CONTOUR):
        cv2.fillPoly(mask, [np.round(points[list(contour), :2]).astype(np.int32)], 255)
    return cv2.dilate(mask, np.ones((grow, grow), np.uint8))


def close_eyes_blurred(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Eyes shut, out of focus: the painted closure, then the eye regions blurred (sigma 2 px) as a
    defocused or moving camera shows them."""
    closed = close_eyes(image, points)
    blurred = cv2.GaussianBlur(closed, (0, 0), 2.0)
    region = _eye_mask(image, points, grow=15) > 0
    closed[region] = blurred[region]
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
