"""Fixed-capacity multichannel ring buffer holding the newest samples of a stream."""

from __future__ import annotations

import numpy as np


class RingBuffer:
    def __init__(self, n_channels: int, capacity: int) -> None:
        if n_channels < 1 or capacity < 1:
            raise ValueError("RingBuffer needs at least one channel and one sample of capacity")
        self._data = np.zeros((n_channels, capacity), dtype=np.float64)
        self._write = 0  # index the next sample goes to
        self._count = 0  # valid samples held, <= capacity

    @property
    def capacity(self) -> int:
        return self._data.shape[1]

    def __len__(self) -> int:
        return self._count

    def clear(self) -> None:
        self._write = 0
        self._count = 0

    def extend(self, chunk: np.ndarray) -> None:
        """Append (n_channels, n) samples; only the newest `capacity` are kept."""
        if chunk.ndim != 2 or chunk.shape[0] != self._data.shape[0]:
            raise ValueError(f"chunk shape {chunk.shape} does not match {self._data.shape[0]} channels")
        cap = self.capacity
        n = chunk.shape[1]
        if n >= cap:
            self._data[:] = chunk[:, n - cap :]
            self._write = 0
            self._count = cap
            return
        first = min(n, cap - self._write)  # part that fits before wrapping
        self._data[:, self._write : self._write + first] = chunk[:, :first]
        self._data[:, : n - first] = chunk[:, first:]
        self._write = (self._write + n) % cap
        self._count = min(cap, self._count + n)

    def latest(self, n: int | None = None) -> np.ndarray:
        """A contiguous copy of the newest `n` samples (default: all held), oldest first."""
        n = self._count if n is None else n
        if not 0 <= n <= self._count:
            raise ValueError(f"asked for {n} samples but {self._count} are held")
        start = (self._write - n) % self.capacity
        if start + n <= self.capacity:
            return self._data[:, start : start + n].copy()
        return np.concatenate((self._data[:, start:], self._data[:, : self._write]), axis=1)
