from __future__ import annotations

import numpy as np
import pytest

from vigil_eeg.ring_buffer import RingBuffer


def _stream(n_channels: int, n: int, start: int = 0) -> np.ndarray:
    return np.arange(start, start + n, dtype=float)[None, :] + 1000 * np.arange(n_channels)[:, None]


@pytest.mark.parametrize("chunk", [1, 3, 7, 10, 25])
def test_latest_equals_the_tail_of_the_stream(chunk):
    buffer = RingBuffer(3, 10)
    full = _stream(3, 53)
    for start in range(0, 53, chunk):
        buffer.extend(full[:, start : start + chunk])
        held = min(10, start + full[:, start : start + chunk].shape[1])
        assert len(buffer) == held
        np.testing.assert_array_equal(buffer.latest(), full[:, : start + chunk][:, -held:])
    np.testing.assert_array_equal(buffer.latest(4), full[:, -4:])


def test_clear_and_errors():
    buffer = RingBuffer(2, 5)
    buffer.extend(_stream(2, 3))
    buffer.clear()
    assert len(buffer) == 0
    assert buffer.latest().shape == (2, 0)
    with pytest.raises(ValueError):
        buffer.latest(1)
    with pytest.raises(ValueError):
        buffer.extend(_stream(3, 2))
    with pytest.raises(ValueError):
        RingBuffer(0, 5)


def test_latest_is_a_copy():
    buffer = RingBuffer(1, 4)
    buffer.extend(_stream(1, 4))
    window = buffer.latest()
    window[:] = -1
    assert buffer.latest()[0, 0] == 0
