"""Small EDF+/BDF+ files written with pyedflib: mixed units, a second sample rate and the
annotation channel EDF+ adds, so readers must convert units and keep only the common-rate signals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyedflib

UV_PER = {"uV": 1.0, "mV": 1e3}


def write_variant(path: Path) -> dict:
    """Writes `path` (.edf or .bdf by extension); returns what a reader must produce (µV)."""
    rng = np.random.default_rng(7)
    seconds, rate = 6, 256
    t = np.arange(seconds * rate) / rate
    fz_uv = 40 * np.sin(2 * np.pi * 10 * t) + rng.normal(0, 5, t.size)
    cz_mv = (25 * np.sin(2 * np.pi * 6 * t) + rng.normal(0, 5, t.size)) / 1e3
    ecg = np.sin(2 * np.pi * 1.2 * np.arange(seconds * 128) / 128)
    headers = [
        {"label": "Fz", "dimension": "uV", "sample_frequency": rate, "physical_min": -200.0, "physical_max": 200.0,
         "digital_min": -32768, "digital_max": 32767},
        {"label": "Cz", "dimension": "mV", "sample_frequency": rate, "physical_min": -0.2, "physical_max": 0.2,
         "digital_min": -32768, "digital_max": 32767},
        {"label": "ECG", "dimension": "mV", "sample_frequency": 128, "physical_min": -2.0, "physical_max": 2.0,
         "digital_min": -32768, "digital_max": 32767},
    ]  # fmt: skip
    if path.suffix == ".bdf":
        for h in headers:
            h["digital_min"], h["digital_max"] = -8388608, 8388607
    assert pyedflib.highlevel.write_edf(str(path), [fz_uv, cz_mv, ecg], headers)
    with pyedflib.EdfReader(str(path)) as reader:  # what was stored (quantised), in µV
        expected = np.array([reader.readSignal(0) * UV_PER["uV"], reader.readSignal(1) * UV_PER["mV"]])
    return {"sfreq": float(rate), "ch_names": ["Fz", "Cz"], "data_uv": expected}
