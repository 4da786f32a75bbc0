"""Moved to shared_vision.sources (one copy for fatigue and emotion); re-exported for old imports."""

from shared_vision.sources import MODELS, installed_package_root, read_model

__all__ = ["MODELS", "installed_package_root", "read_model"]
