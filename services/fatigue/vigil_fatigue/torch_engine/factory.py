"""TorchLandmarkEngine from the fatigue service settings (the backend's `engine_factory` hook)."""

from __future__ import annotations

import os
from pathlib import Path

from .engine import TorchLandmarkEngine

# Where the image's builder stage puts the converted models (see INTEGRATION.md).
DEFAULT_WEIGHTS_DIR = "/opt/vigil/models/face_mesh_torch"
WEIGHTS_DIR_ENV = "VIGIL_FATIGUE_TORCH_WEIGHTS_DIR"


def torch_engine_factory(settings) -> TorchLandmarkEngine:
    """Reads max_faces, min_detection_confidence, face_detection_model and, once the settings
    have them, torch_weights_dir and torch_device (defaults: $VIGIL_FATIGUE_TORCH_WEIGHTS_DIR or
    DEFAULT_WEIGHTS_DIR, and "auto")."""
    if getattr(settings, "face_detection_model", 0) != 0:
        raise ValueError("face_detection_model: the torch engine ports the short-range detector (0) only")
    weights_dir = getattr(settings, "torch_weights_dir", None) or os.environ.get(WEIGHTS_DIR_ENV) or DEFAULT_WEIGHTS_DIR
    return TorchLandmarkEngine(
        Path(weights_dir),
        device=getattr(settings, "torch_device", None) or "auto",
        max_faces=settings.max_faces,
        min_detection_confidence=settings.min_detection_confidence,
    )
