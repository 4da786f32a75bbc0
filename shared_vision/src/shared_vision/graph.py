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

    def __init__(
        self,
        program: dict,
        weights: dict[str, torch.Tensor],
        *,
        depthwise_taps_max: int = 0,
        channels_last_weights: bool = False,
    ):
        super().__init__()
        # Depthwise convolutions on maps at most this wide run as a sum of shifted taps (see
        # _depthwise_taps); 0: never. Only for ahead-of-time compilation (aot.py).
        self.depthwise_taps_max = depthwise_taps_max
        # Convolution weights stored channels-last, like the activations. Compiled, a weight in
        # torch's default layout is re-laid out on every call (1.6 MB for the attention mesh's
        # landmark head: ~0.1-0.2 ms per forward, and the cache it evicts). Only for
        # ahead-of-time compilation (aot.py); TorchScript lays its weights out once by itself.
        self.channels_last_weights = channels_last_weights
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
        self.ops = program["ops"]  # kept for rewrites (lanes.fuse_parallel_branches)
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
            w = self._weight(weight)
            depthwise = groups > 1 and groups == w.shape[0] and w.shape[1] == 1 and dilation == (1, 1)

            conv_weight = weight
            if self.channels_last_weights:
                conv_weight = f"{weight}:channels_last"
                safe = f"_channels_last_{out}"
                self.register_buffer(safe, w.contiguous(memory_format=torch.channels_last))
                self._buffer_names[conv_weight] = safe

            def conv(x):
                if depthwise and self.depthwise_taps_max and x.shape[-1] <= self.depthwise_taps_max:
                    y = _depthwise_taps(F.pad(x, (left, right, top, bottom)), self._weight(weight), stride)
                    b = self._weight(bias)
                    return _activate(y if b is None else y + b[None, :, None, None], act)
                if not symmetric:
                    x = F.pad(x, (left, right, top, bottom))
                y = F.conv2d(x, self._weight(conv_weight), self._weight(bias), stride, pad_arg, dilation, groups)
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
        if kind == "mul":
            operands, act = op["operands"], op["activation"]

            def product(*tensors):
                it = iter(tensors)
                a, b = (next(it) if isinstance(o, int) else self._weight(o) for o in operands)
                return _activate(a * b, act)

            return product, op["inputs"], out
        if kind == "landmarks_to_matrix":
            return self._landmarks_to_matrix(op), op["inputs"], out
        if kind == "transform_tensor_bilinear":
            return self._transform_tensor_bilinear(op), op["inputs"], out
        if kind == "transform_landmarks":
            return _transform_landmarks, op["inputs"], out
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

    # -- MediaPipe's attention-mesh custom ops (mediapipe/util/tflite/operations/, version 2) --------
    def _landmarks_to_matrix(self, op: dict) -> Callable:
        """Landmarks2TransformMatrix v2: the affine map from a (h, w) crop to the landmarks' space
        that frames the subset's box, rotated so the left->right landmark line is at the target
        angle and scaled by (scale_x, scale_y). (B, N, 3) landmarks -> (B, 4, 4) matrices."""
        subset = f"_subset_{op['outputs'][0]}"
        self.register_buffer(subset, torch.tensor(op["subset"], dtype=torch.long))
        left, right, target = op["left"], op["right"], op["target_rotation"]
        (out_h, out_w), (scale_x, scale_y) = op["output_size"], op["scale"]

        def to_matrix(landmarks):
            dx = landmarks[:, right, 0] - landmarks[:, left, 0]
            dy = landmarks[:, right, 1] - landmarks[:, left, 1]
            rotation = target - torch.atan2(dy, dx)
            cos, sin = torch.cos(rotation)[:, None], torch.sin(rotation)[:, None]
            points = landmarks.index_select(1, getattr(self, subset))
            x, y = points[..., 0], points[..., 1]
            rx, ry = cos * x - sin * y, sin * x + cos * y  # the subset, rotated level
            x0, x1, y0, y1 = rx.amin(1), rx.amax(1), ry.amin(1), ry.amax(1)
            mx, my = (x0 + x1) / 2, (y0 + y1) / 2
            cos, sin = cos[:, 0], sin[:, 0]
            cx, cy = cos * mx + sin * my, -sin * mx + cos * my  # box centre, rotated back
            kx, ky = scale_x * (x1 - x0) / out_w, scale_y * (y1 - y0) / out_h
            a00, a01, a10, a11 = cos * kx, sin * ky, -sin * kx, cos * ky
            t0 = cx - a00 * (out_w / 2.0) - a01 * (out_h / 2.0)
            t1 = cy - a10 * (out_w / 2.0) - a11 * (out_h / 2.0)
            zero, one = torch.zeros_like(a00), torch.ones_like(a00)
            rows = [a00, a01, zero, t0, a10, a11, zero, t1, zero, zero, one, zero, zero, zero, zero, one]
            return torch.stack(rows, dim=1).reshape(-1, 4, 4)

        return to_matrix

    def _transform_tensor_bilinear(self, op: dict) -> Callable:
        """TransformTensorBilinear v2: an (h, w) crop of an NCHW activation through a matrix,
        pixel centres mapped (the op's 0.5 correction), bilinear; a sample whose position falls
        outside [0, size - 1] is 0 (grid_sample would blend the border into it)."""
        (in_h, in_w), (out_h, out_w) = op["input_size"], op["output_size"]
        grid = f"_grid_{op['outputs'][0]}"
        ys, xs = torch.meshgrid(torch.arange(out_h) + 0.5, torch.arange(out_w) + 0.5, indexing="ij")
        self.register_buffer(grid, torch.stack([xs, ys, torch.ones_like(xs)]).float())  # (3, h, w)

        def crop(x, matrix):
            g = getattr(self, grid)
            tx = torch.einsum("bk,khw->bhw", matrix[:, 0, [0, 1, 3]], g) - 0.5
            ty = torch.einsum("bk,khw->bhw", matrix[:, 1, [0, 1, 3]], g) - 0.5
            inside = (tx >= 0) & (tx <= in_w - 1) & (ty >= 0) & (ty <= in_h - 1)
            norm = torch.stack([tx * (2.0 / (in_w - 1)) - 1.0, ty * (2.0 / (in_h - 1)) - 1.0], dim=-1)
            y = F.grid_sample(x, norm, mode="bilinear", padding_mode="zeros", align_corners=True)
            return y * inside[:, None].to(y.dtype)

        return crop

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


def _depthwise_taps(x: torch.Tensor, weight: torch.Tensor, stride: tuple[int, int]) -> torch.Tensor:
    """A depthwise convolution (weight (C, 1, kh, kw), x already padded) as kh * kw shifted,
    scaled slices summed. Slower than conv2d op by op; compiled ahead of time, the taps fuse with
    the bias and activation into one loop, where each small conv2d call costs ~30 us of fixed
    setup on CPU (measured on the attention mesh's 2x2 to 24x24 maps)."""
    kh, kw = weight.shape[2], weight.shape[3]
    sh, sw = stride
    out_h, out_w = (x.shape[2] - kh) // sh + 1, (x.shape[3] - kw) // sw + 1
    total = None
    for i in range(kh):
        for j in range(kw):
            window = x[:, :, i : i + sh * (out_h - 1) + 1 : sh, j : j + sw * (out_w - 1) + 1 : sw]
            term = window * weight[:, 0, i, j][None, :, None, None]
            total = term if total is None else total + term
    return total


def _transform_landmarks(landmarks: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """TransformLandmarks v2: x, y of (B, N, 2|3) landmarks through the matrix; z kept."""
    x, y = landmarks[..., 0], landmarks[..., 1]
    tx = matrix[:, 0, 0, None] * x + matrix[:, 0, 1, None] * y + matrix[:, 0, 3, None]
    ty = matrix[:, 1, 0, None] * x + matrix[:, 1, 1, None] * y + matrix[:, 1, 3, None]
    return torch.cat([torch.stack([tx, ty], dim=-1), landmarks[..., 2:]], dim=-1)


def load_graph(path: str | Path, *, depthwise_taps_max: int = 0, channels_last_weights: bool = False) -> TFLiteGraph:
    """A converted model from its safetensors file (weights + program in the metadata).
    `depthwise_taps_max`, `channels_last_weights`: see TFLiteGraph (ahead-of-time compilation only)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"converted model {path} not found (run convert_tflite.py at build time)")
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
        if PROGRAM_METADATA_KEY not in metadata:
            raise ValueError(f"{path}: no {PROGRAM_METADATA_KEY} metadata; not a converted TFLite model")
        weights = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (safe_open has no iter)
    program = json.loads(metadata[PROGRAM_METADATA_KEY])
    return TFLiteGraph(
        program, weights, depthwise_taps_max=depthwise_taps_max, channels_last_weights=channels_last_weights
    ).eval()
