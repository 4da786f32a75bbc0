"""Optional learned model: a TorchScript module fed with the window's features.

No pretrained EEG drowsiness model exists offline, so none ships; a deployment that trained one
points `model_path` at it. torch is imported only here and only when a path is configured, so the
image (which does not install torch) stays small.

Input: float32 tensor (1, len(FEATURE_NAMES)) in FEATURE_NAMES order. Output: any tensor; it is
reported flattened, and a single value is also reported as `score`.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from typing import Any

import numpy as np

from .analysis import WindowFeatures
from .spectral import BANDS, INDEX_NAMES

logger = logging.getLogger(__name__)

FEATURE_NAMES = tuple(f"relative_{band}" for band in BANDS) + tuple(f"log10_{name}" for name in INDEX_NAMES)


def feature_vector(features: WindowFeatures) -> np.ndarray | None:
    """The model's input, or None when the window has no finite features."""
    values = [features.mean_relative_power[band] for band in BANDS]
    values += [math.log10(v) if v > 0 else float("nan") for v in (features.indices[n] for n in INDEX_NAMES)]
    vector = np.asarray(values, dtype=np.float32)
    return vector if np.isfinite(vector).all() else None


class TorchScriptModel:
    def __init__(self, path: str) -> None:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"model_path {path!r} is not a file")
        try:
            import torch  # lazy: only deployments with a learned model need torch
        except ImportError as exc:
            raise RuntimeError("model_path is set but torch is not installed in this environment") from exc
        self._torch = torch
        self.path = path
        with warnings.catch_warnings():
            # torch 2.13 marks TorchScript deprecated (in favour of torch.export); it still loads.
            warnings.simplefilter("ignore", DeprecationWarning)
            self._module = torch.jit.load(path, map_location="cpu")
        self._module.eval()
        # Fail at start-up, not on the first request, if the module does not take our input.
        try:
            self.predict(np.zeros(len(FEATURE_NAMES), dtype=np.float32))
        except Exception as exc:
            raise RuntimeError(
                f"TorchScript model {path} does not accept a (1, {len(FEATURE_NAMES)}) float32 input: {exc}"
            ) from exc
        logger.info("loaded TorchScript model %s", path)

    def predict(self, vector: np.ndarray) -> dict[str, Any]:
        torch = self._torch
        with torch.inference_mode():
            output = self._module(torch.from_numpy(vector.reshape(1, -1)))
        if not isinstance(output, torch.Tensor):
            raise RuntimeError(f"TorchScript model returned {type(output).__name__}, expected a tensor")
        values = [float(v) for v in output.detach().reshape(-1).tolist()]
        result: dict[str, Any] = {"output": values}
        if len(values) == 1:
            result["score"] = values[0]
        return result
