"""mini-Xception FER2013 network as a Transformers custom model, registered with the Auto classes.

Importing this package registers `model_type="mini_xception"`, so a directory written by the
converter loads with `AutoConfig` / `AutoModelForImageClassification` / `AutoImageProcessor`
without `trust_remote_code`.
"""

from __future__ import annotations

from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification

from .configuration import FER2013_LABELS, MiniXceptionConfig
from .image_processing import MiniXceptionImageProcessor
from .modeling import MiniXceptionForImageClassification


def register_auto_classes() -> None:
    """Idempotent: later calls (or a second import path) are no-ops."""
    AutoConfig.register(MiniXceptionConfig.model_type, MiniXceptionConfig, exist_ok=True)
    AutoModelForImageClassification.register(MiniXceptionConfig, MiniXceptionForImageClassification, exist_ok=True)
    AutoImageProcessor.register(
        MiniXceptionConfig, image_processor_classes={"pil": MiniXceptionImageProcessor}, exist_ok=True
    )


register_auto_classes()

__all__ = [
    "FER2013_LABELS",
    "MiniXceptionConfig",
    "MiniXceptionForImageClassification",
    "MiniXceptionImageProcessor",
    "register_auto_classes",
]
