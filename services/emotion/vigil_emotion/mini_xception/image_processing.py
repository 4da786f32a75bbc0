"""Image processor of the mini-Xception network: exactly the `fer` package's face preprocessing.

`fer` (FER.detect_emotions) turns a face crop into network input as: grey (OpenCV BGR->grey
weights), `cv2.resize` to 64x64 (bilinear), x / 255, then (x - 0.5) * 2, i.e. [-1, 1]. The same
OpenCV calls are used here so the port sees the inputs the Keras network was used with.
Input: face crops as RGB (H, W, 3) or grey (H, W) uint8 arrays (or PIL images).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import cv2
import numpy as np
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature


class MiniXceptionImageProcessor(BaseImageProcessor):
    model_input_names = ["pixel_values"]

    def __init__(
        self,
        size: int = 64,
        rescale_factor: float = 1 / 255,
        image_mean: float = 0.5,
        image_std: float = 0.5,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.size = int(size)
        self.rescale_factor = float(rescale_factor)
        self.image_mean = float(image_mean)
        self.image_std = float(image_std)

    def to_grey(self, image: Any) -> np.ndarray:
        array = np.asarray(image)
        if array.dtype != np.uint8:
            raise ValueError(f"expected a uint8 image, got dtype {array.dtype}")
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[:, :, 0]
        if array.ndim == 3 and array.shape[2] == 3:
            # RGB->grey on an RGB crop gives the same pixels as fer's BGR->grey on the BGR frame.
            return cv2.cvtColor(array, cv2.COLOR_RGB2GRAY)
        if array.ndim == 2:
            return array
        raise ValueError(f"expected an (H, W), (H, W, 1) or (H, W, 3) image, got shape {array.shape}")

    def preprocess(self, images: Any, return_tensors: str | None = None, **kwargs: Any) -> BatchFeature:
        if not isinstance(images, (list, tuple)):
            images = [images]
        batch = np.stack([self._one(image) for image in images]).astype(np.float32)
        return BatchFeature(data={"pixel_values": batch[:, None, :, :]}, tensor_type=return_tensors)

    def _one(self, image: Any) -> np.ndarray:
        grey = self.to_grey(image)
        if grey.shape[0] == 0 or grey.shape[1] == 0:
            raise ValueError("empty image")
        resized = cv2.resize(grey, (self.size, self.size))  # INTER_LINEAR, fer's call
        # fer computes (x / 255.0 - 0.5) * 2.0 in float32; with mean = std = 0.5 this is that, bit for bit.
        scaled = resized.astype(np.float32) / np.float32(1.0 / self.rescale_factor)
        return (scaled - np.float32(self.image_mean)) / np.float32(self.image_std)

    def __call__(self, images: Iterable[Any], **kwargs: Any) -> BatchFeature:
        return self.preprocess(images, **kwargs)
