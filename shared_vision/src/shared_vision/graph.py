"""Runs a converted TFLite graph (see tflite_convert) as a torch module, any batch size.

Inputs and outputs keep TFLite's NHWC shapes (with the batch dimension free), so the module is a
drop-in for the interpreter; inside, activations are NCHW.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .tflite_convert import FORMAT_VERSION, PROGRAM_METADATA_KEY

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor] | None] = {
    "none": None,
    "relu": torch.relu,
    "relu6": lambda x: F.hardtanh(x, 0.0, 6.0),
    "relu_n1_to_1": lambda x: F.hardtanh(x, -1.0, 1.0),
    "tanh": torch.tanh,
}


def _activate(x: torch.Tensor, name: str) -> torch.Tensor:
    fn = _ACTIVATIONS[name]
    return x if fn is None else fn(x)


class TFLiteGraph(nn.Module):
    """The op program of one converted model with its weights as buffers."""

    def __init__(self, program: dict, weights: dict[str, torch.Tensor]):
        super().__init__()
        if program.get("format") != FORMAT_VERSION:
            raise ValueError(f"converted model format {program.get('format')!r}, expected {FORMAT_VERSION}")
        self.source = program["source"]
        self.input_specs = program["inputs"]
        self.output_specs = program["outputs"]
        self._buffer_names: dict[str, str] = {}
        for name, value in weights.items():
            safe = name.replace(".", "_")
            self.register_buffer(safe, value.float().contiguous())
            self._buffer_names[name] = safe
        self._steps = [self._compile(op) for op in program["ops"]]

    def _weight(self, name: str | None) -> torch.Tensor | None:
        return None if name is None else getattr(self, self._buffer_names[name])

    def _compile(self, op: dict) -> tuple[Callable, list[int], int]:
        kind = op["op"]
        out = op["outputs"][0]
        if kind == "conv2d":
            left, right, top, bottom = op["pad"]
            weight, bias = op["weight"], op["bias"]
            stride, dilation, groups, act = tuple(op["stride"]), tuple(op["dilation"]), op["groups"], op["activation"]
            if self._weight(weight).shape[2:] == (1, 1) and stride == (1, 1) and groups == 1 and not any(op["pad"]):
                # Pointwise conv as a matmul over the channels of the NHWC view: activations stay
                # channels-last in memory, so this needs no layout copy (torch's 1x1 conv path does).
                matrix = weight

                def pointwise(x):
                    w = self._weight(matrix)
                    y = F.linear(x.permute(0, 2, 3, 1), w.reshape(w.shape[0], -1), self._weight(bias))
                    return _activate(y.permute(0, 3, 1, 2), act)

                return pointwise, op["inputs"], out
            symmetric = left == right and top == bottom
            pad_arg = (top, left) if symmetric else 0

            def conv(x):
                if not symmetric:
                    x = F.pad(x, (left, right, top, bottom))
                y = F.conv2d(x, self._weight(weight), self._weight(bias), stride, pad_arg, dilation, groups)
                return _activate(y, act)

            return conv, op["inputs"], out
        if kind == "prelu":
            alpha = op["alpha"]
            shape = self._weight(alpha).shape
            # One slope per channel: torch's fused kernel; any other broadcast: the formula.
            per_channel = len(shape) == 4 and shape[0] == shape[2] == shape[3] == 1

            def prelu(x):
                a = self._weight(alpha)
                if per_channel:
                    return F.prelu(x, a.reshape(-1))
                return torch.where(x >= 0, x, x * a)

            return prelu, op["inputs"], out
        if kind == "add":
            operands, act = op["operands"], op["activation"]

            def binary(*tensors):
                it = iter(tensors)
                a, b = (next(it) if isinstance(o, int) else self._weight(o) for o in operands)
                return _activate(a + b, act)

            return binary, op["inputs"], out
        if kind == "activation":
            act = op["activation"]
            return (lambda x: _activate(x, act)), op["inputs"], out
        if kind == "max_pool2d":
            left, right, top, bottom = op["pad"]
            kernel, stride, act = tuple(op["kernel"]), tuple(op["stride"]), op["activation"]
            padded = any(op["pad"])

            def pool(x):
                if padded:  # TFLite ignores padded cells: pad with -inf
                    x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
                return _activate(F.max_pool2d(x, kernel, stride), act)

            return pool, op["inputs"], out
        if kind == "pad":
            pad = tuple(op["pad"])
            return (lambda x: F.pad(x, pad)), op["inputs"], out
        if kind == "reshape":
            shape, in_nchw, out_nchw = op["shape"], op["in_nchw"], op["out_nchw"]

            def reshape(x):
                if in_nchw:
                    x = x.permute(0, 2, 3, 1)
                y = x.reshape([x.shape[0], *shape])
                return y.permute(0, 3, 1, 2) if out_nchw else y

            return reshape, op["inputs"], out
        if kind == "concat":
            axis, act = op["axis"], op["activation"]
            return (lambda *xs: _activate(torch.cat(xs, axis), act)), op["inputs"], out
        raise ValueError(f"{self.source}: unknown op {kind!r} in converted program")

    def forward(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        if len(inputs) != len(self.input_specs):
            raise ValueError(f"{self.source}: expected {len(self.input_specs)} inputs, got {len(inputs)}")
        values: dict[int, torch.Tensor] = {}
        for spec, x in zip(self.input_specs, inputs, strict=True):
            values[spec["id"]] = x.permute(0, 3, 1, 2) if x.dim() == 4 else x
        for fn, ins, out in self._steps:
            values[out] = fn(*(values[i] for i in ins))
        outputs = []
        for spec in self.output_specs:
            y = values[spec["id"]]
            outputs.append(y.permute(0, 2, 3, 1) if y.dim() == 4 else y)
        return outputs


def load_graph(path: str | Path) -> TFLiteGraph:
    """A converted model from its safetensors file (weights + program in the metadata)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"converted model {path} not found (run convert_tflite.py at build time)")
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
        if PROGRAM_METADATA_KEY not in metadata:
            raise ValueError(f"{path}: no {PROGRAM_METADATA_KEY} metadata; not a converted TFLite model")
        weights = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (safe_open has no iter)
    return TFLiteGraph(json.loads(metadata[PROGRAM_METADATA_KEY]), weights).eval()
