"""Facial-expression classifier: any local Transformers image-classification checkpoint.

Loads `model_dir` with `AutoConfig` / `AutoModelForImageClassification` / `AutoImageProcessor`,
offline (`local_files_only`, no remote code). The converted mini-Xception loads this way because
importing `vigil_emotion.mini_xception` registers it with the Auto classes; a ViT or any other
image classifier saved with `save_pretrained` loads the same way. Labels come from `id2label`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification
from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING

from . import mini_xception  # noqa: F401  (registers model_type "mini_xception" with the Auto classes)

logger = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """`model_dir` is missing or does not hold a usable image-classification model."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"device '{name}' requested but CUDA is not available")
    return device


class ExpressionClassifier:
    """Image processor + model + label list; `predict` runs one forward pass for all crops."""

    def __init__(self, model_dir: str | Path, device: str = "auto"):
        self.model_dir = Path(model_dir)
        self.device = resolve_device(device)
        self.config = _load_config(self.model_dir)
        self.labels = _labels(self.config)
        try:
            self.processor = AutoImageProcessor.from_pretrained(self.model_dir, local_files_only=True)
        except Exception as exc:
            raise ModelLoadError(
                f"no usable image processor (preprocessor_config.json) in {self.model_dir}: {exc}"
            ) from exc
        try:
            model = AutoModelForImageClassification.from_pretrained(self.model_dir, local_files_only=True)
        except Exception as exc:
            raise ModelLoadError(f"could not load the model weights from {self.model_dir}: {exc}") from exc
        self.model = model.to(self.device).eval()
        self._check_output_size()

    @property
    def model_type(self) -> str:
        return self.config.model_type

    def predict(self, crops: list[np.ndarray]) -> np.ndarray:
        """RGB uint8 face crops -> class probabilities, shape (len(crops), len(labels))."""
        if not crops:
            return np.zeros((0, len(self.labels)), dtype=np.float64)
        inputs = self.processor(list(crops), return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(self.device, dtype=self.model.dtype)
        with torch.inference_mode():
            logits = self.model(pixel_values=pixel_values).logits
        probabilities = torch.softmax(logits.float(), dim=-1)
        return probabilities.cpu().numpy().astype(np.float64)

    def _check_output_size(self) -> None:
        # One real forward pass at start-up: processor and model must fit together and give one
        # score per label; better to fail here (unhealthy, with the reason) than on the first frame.
        probe = np.full((96, 96, 3), 128, dtype=np.uint8)
        try:
            out = self.predict([probe])
        except Exception as exc:
            raise ModelLoadError(f"model in {self.model_dir} failed on a test image: {exc}") from exc
        if out.shape != (1, len(self.labels)):
            raise ModelLoadError(
                f"model in {self.model_dir} returned shape {out.shape}, expected (1, {len(self.labels)})"
            )


def _load_config(model_dir: Path):
    if not model_dir.is_dir():
        raise ModelLoadError(f"model_dir {model_dir} does not exist or is not a directory")
    if not (model_dir / "config.json").is_file():
        raise ModelLoadError(f"model_dir {model_dir} has no config.json (expected a save_pretrained directory)")
    try:
        config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
    except Exception as exc:
        raise ModelLoadError(f"config.json in {model_dir} is not a usable Transformers config: {exc}") from exc
    if type(config) not in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING:
        raise ModelLoadError(
            f"model_dir {model_dir} holds a '{config.model_type}' model, which is not an image-classification "
            "model (AutoModelForImageClassification has no class for it)"
        )
    if getattr(config, "problem_type", None) in ("multi_label_classification", "regression"):
        raise ModelLoadError(
            f"model in {model_dir} is configured for {config.problem_type}; "
            "an expression model must be single-label (softmax)"
        )
    return config


def _labels(config) -> list[str]:
    id2label = config.id2label or {}
    if len(id2label) < 2:
        raise ModelLoadError("config.id2label must name at least two classes")
    indices = sorted(int(i) for i in id2label)
    if indices != list(range(len(indices))):
        raise ModelLoadError(f"config.id2label keys must be 0..{len(indices) - 1}, got {indices}")
    return [str(id2label[i]) for i in indices]
