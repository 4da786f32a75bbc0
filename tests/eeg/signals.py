"""Signal helpers shared by the EEG tests."""

from __future__ import annotations

import numpy as np


def sine_uv(freq: float, amplitude_uv: float, sfreq: float, seconds: float, phase: float = 0.0) -> np.ndarray:
    t = np.arange(round(sfreq * seconds)) / sfreq
    return amplitude_uv * np.sin(2 * np.pi * freq * t + phase)
