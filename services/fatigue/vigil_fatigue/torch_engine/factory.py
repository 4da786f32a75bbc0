"""TorchLandmarkEngine from the fatigue service settings (the backend's `engine_factory` hook)."""

from __future__ import annotations

from pathlib import Path

from .engine import TorchLandmarkEngine


def torch_engine_factory(settings) -> TorchLandmarkEngine:
    if settings.face_detection_model != 0:
        raise ValueError("face_detection_model: the torch engine ports the short-range detector (0) only")
    return TorchLandmarkEngine(
        Path(settings.torch_weights_dir),
        device=settings.device,
        max_faces=settings.max_faces,
        min_detection_confidence=settings.min_detection_confidence,
        refine_eyes=settings.torch_refine_eyes,
        refinement=settings.torch_refinement,
        compiled=settings.torch_compiled,
    )
