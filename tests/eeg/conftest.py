"""Shared fixtures for the EEG backend tests: settings and the real Emotiv recording."""

from __future__ import annotations

import importlib.metadata
import pickle
from pathlib import Path

import numpy as np
import pytest

from vigil_eeg.settings import EEGSettings

SPKIT_EEG_FILE = "spkit/data/files/EEG16SecData.pkl"


@pytest.fixture(scope="session")
def settings() -> EEGSettings:
    return EEGSettings()


@pytest.fixture(scope="session")
def emotiv_recording() -> tuple[np.ndarray, list[str]]:
    """The real 16 s Emotiv recording shipped in spkit (PhyAAt), as (channels x samples µV, names).

    Read straight from the installed distribution's files: importing spkit would need its heavy
    deps, and the file must not be copied into this repo."""
    try:
        path = Path(importlib.metadata.distribution("spkit").locate_file(SPKIT_EEG_FILE))
    except importlib.metadata.PackageNotFoundError:
        pytest.fail("spkit==0.0.9.7 is a test dependency (services/eeg/requirements-test.txt)")
    with path.open("rb") as fh:
        samples, ch_names = pickle.load(fh)  # (2048 samples, 14 channels) at 128 Hz, µV
    return np.asarray(samples, dtype=np.float64).T.copy(), list(ch_names)
