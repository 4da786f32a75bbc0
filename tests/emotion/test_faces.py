"""fer's crop geometry: square box, offsets, border filled with the bottom rows' mean."""

from __future__ import annotations

import numpy as np

from vigil_emotion.faces import FaceBox, crop_faces, pad_frame, to_square


def test_to_square_grows_the_short_side_centred():
    assert to_square(FaceBox(10, 20, 40, 60)) == FaceBox(0, 20, 60, 60)
    assert to_square(FaceBox(10, 20, 60, 40)) == FaceBox(10, 10, 60, 60)
    assert to_square(FaceBox(5, 5, 30, 30)) == FaceBox(5, 5, 30, 30)


def test_crop_adds_offsets():
    frame = np.arange(200 * 200 * 3, dtype=np.uint32).reshape(200, 200, 3).astype(np.uint8)
    crop = crop_faces(frame, [FaceBox(50, 60, 40, 40)], offsets=(10, 5))[0]
    assert crop.shape == (50, 60, 3)
    np.testing.assert_array_equal(crop, frame[55:105, 40:100])


def test_crop_beyond_the_frame_uses_the_bottom_mean_border():
    frame = np.zeros((100, 100, 3), np.uint8)
    frame[-2:] = (10, 20, 30)  # bottom rows' mean per channel
    crop = crop_faces(frame, [FaceBox(0, 0, 30, 30)], offsets=(10, 10))[0]
    assert crop.shape == (50, 50, 3)
    np.testing.assert_array_equal(crop[0, 0], (10, 20, 30))  # border
    np.testing.assert_array_equal(crop[10, 10], (0, 0, 0))  # frame pixel
    assert pad_frame(frame).shape == (180, 180, 3)
