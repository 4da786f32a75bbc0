"""TFLite flatbuffer -> torch graph program + float32 weights (build-time only; needs `tflite`).

The converted graph keeps TFLite's op list but in torch's NCHW layout: every 4-D activation is
NCHW, weights are transposed here once, SAME padding is resolved to explicit (possibly
asymmetric) pads from the static shapes, and FLOAT16 constants behind DEQUANTIZE ops are folded
to float32 (TFLite's CPU kernels dequantize them the same way). The result is a list of plain
dict ops that `graph.TFLiteGraph` executes; `save_converted` writes weights and program into one
safetensors file, so the runtime needs neither TFLite nor mediapipe.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PROGRAM_METADATA_KEY = "vigil_tflite_program"
FORMAT_VERSION = "1"


class ConversionError(ValueError):
    """The model uses something this converter does not translate."""


@dataclass
class ConvertedGraph:
    ops: list[dict] = field(default_factory=list)
    weights: dict[str, np.ndarray] = field(default_factory=dict)  # name -> float32, torch layout
    inputs: list[dict] = field(default_factory=list)  # {"id", "name", "shape"} (TFLite NHWC shape)
    outputs: list[dict] = field(default_factory=list)
    source: str = ""

    def program(self) -> dict:
        return {
            "format": FORMAT_VERSION,
            "source": self.source,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "ops": self.ops,
        }


def _enum_names(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


_ACTIVATIONS = {0: "none", 1: "relu", 2: "relu_n1_to_1", 3: "relu6", 4: "tanh"}


def _activation(code: int, op_name: str) -> str:
    if code not in _ACTIVATIONS:
        raise ConversionError(f"{op_name}: unsupported fused activation {code}")
    return _ACTIVATIONS[code]


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TFLite SAME padding (before, after): the extra pixel, if any, goes after (right/bottom)."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class _Reader:
    def __init__(self, buf: bytes, source: str):
        import tflite  # build-time dependency only

        self.tflite = tflite
        self.model = tflite.Model.GetRootAsModel(buf, 0)
        if self.model.SubgraphsLength() != 1:
            raise ConversionError(f"{source}: expected 1 subgraph, found {self.model.SubgraphsLength()}")
        self.graph = self.model.Subgraphs(0)
        self.op_names = _enum_names(tflite.BuiltinOperator)
        self.type_names = _enum_names(tflite.TensorType)
        self.result = ConvertedGraph(source=source)
        self.constants: dict[int, np.ndarray] = {}  # tensor index -> NHWC-layout float32 value

    # -- tensors -------------------------------------------------------------------------------
    def shape(self, index: int) -> list[int]:
        return self.graph.Tensors(index).ShapeAsNumpy().tolist()

    def raw_constant(self, index: int) -> np.ndarray | None:
        tensor = self.graph.Tensors(index)
        data = self.model.Buffers(tensor.Buffer()).DataAsNumpy()
        if isinstance(data, int) or data.size == 0:
            return None
        if tensor.Quantization() is not None and tensor.Quantization().ScaleLength() > 0:
            raise ConversionError(f"tensor {tensor.Name().decode()}: quantized tensors are not supported")
        dtype = {"FLOAT32": np.float32, "FLOAT16": np.float16, "INT32": np.int32, "INT64": np.int64}
        type_name = self.type_names[tensor.Type()]
        if type_name not in dtype:
            raise ConversionError(f"tensor {tensor.Name().decode()}: unsupported type {type_name}")
        return data.view(dtype[type_name]).reshape(self.shape(index))

    def constant(self, index: int) -> np.ndarray | None:
        if index in self.constants:
            return self.constants[index]
        return self.raw_constant(index)

    def add_weight(self, name: str, value: np.ndarray) -> str:
        self.result.weights[name] = np.ascontiguousarray(value, dtype=np.float32)
        return name

    # -- ops -----------------------------------------------------------------------------------
    def convert(self) -> ConvertedGraph:
        g = self.graph
        for k in range(g.InputsLength()):
            index = int(g.Inputs(k))
            self.result.inputs.append(
                {"id": index, "name": g.Tensors(index).Name().decode(), "shape": self.shape(index)}
            )
        for k in range(g.OutputsLength()):
            index = int(g.Outputs(k))
            self.result.outputs.append(
                {"id": index, "name": g.Tensors(index).Name().decode(), "shape": self.shape(index)}
            )
        for i in range(g.OperatorsLength()):
            op = g.Operators(i)
            code = self.model.OperatorCodes(op.OpcodeIndex())
            name = self.op_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
            handler = getattr(self, "op_" + name.lower(), None)
            if handler is None:
                raise ConversionError(f"{self.result.source}: op #{i} {name} is not supported")
            handler(op, [int(t) for t in op.InputsAsNumpy()], [int(t) for t in op.OutputsAsNumpy()])
        return self.result

    def _options(self, op, cls):
        table = op.BuiltinOptions()
        options = cls()
        options.Init(table.Bytes, table.Pos)
        return options

    def _emit(self, **op) -> None:
        self.result.ops.append(op)

    def op_dequantize(self, op, ins, outs) -> None:
        value = self.raw_constant(ins[0])
        if value is None:
            raise ConversionError("DEQUANTIZE of a non-constant tensor is not supported")
        self.constants[outs[0]] = value.astype(np.float32)

    def _conv_common(self, ins, outs, options, kernel_hw, op_name):
        in_shape = self.shape(ins[0])  # NHWC
        stride = (options.StrideH(), options.StrideW())
        dilation = (options.DilationHFactor(), options.DilationWFactor())
        if options.Padding() == self.tflite.Padding.SAME:
            top, bottom = same_padding(in_shape[1], kernel_hw[0], stride[0], dilation[0])
            left, right = same_padding(in_shape[2], kernel_hw[1], stride[1], dilation[1])
        else:
            top = bottom = left = right = 0
        bias = self.constant(ins[2]) if len(ins) > 2 and ins[2] >= 0 else None
        return {
            "stride": list(stride),
            "dilation": list(dilation),
            "pad": [left, right, top, bottom],  # F.pad order for the last two dims
            "activation": _activation(options.FusedActivationFunction(), op_name),
            "bias": None if bias is None else self.add_weight(f"t{ins[2]}", bias),
        }

    def op_conv_2d(self, op, ins, outs) -> None:
        weight = self.constant(ins[1])  # [O, H, W, I]
        if weight is None:
            raise ConversionError("CONV_2D with a non-constant filter is not supported")
        options = self._options(op, self.tflite.Conv2DOptions)
        common = self._conv_common(ins, outs, options, weight.shape[1:3], "CONV_2D")
        groups = self.shape(ins[0])[3] // weight.shape[3]
        w = self.add_weight(f"t{ins[1]}", weight.transpose(0, 3, 1, 2))
        self._emit(op="conv2d", inputs=[ins[0]], outputs=outs, weight=w, groups=groups, **common)

    def op_depthwise_conv_2d(self, op, ins, outs) -> None:
        weight = self.constant(ins[1])  # [1, H, W, C * M]
        if weight is None:
            raise ConversionError("DEPTHWISE_CONV_2D with a non-constant filter is not supported")
        options = self._options(op, self.tflite.DepthwiseConv2DOptions)
        common = self._conv_common(ins, outs, options, weight.shape[1:3], "DEPTHWISE_CONV_2D")
        channels = self.shape(ins[0])[3]
        # Output channel c*M+m reads input channel c: exactly torch's grouped conv with groups=C.
        w = self.add_weight(f"t{ins[1]}", weight[0].transpose(2, 0, 1)[:, None])
        self._emit(op="conv2d", inputs=[ins[0]], outputs=outs, weight=w, groups=channels, **common)

    def _to_nchw_constant(self, value: np.ndarray, rank: int) -> np.ndarray:
        """A constant that broadcasts against an NHWC tensor of `rank` -> the NCHW equivalent."""
        if rank != 4:
            return value
        value = value.reshape((1,) * (4 - value.ndim) + value.shape)
        return value.transpose(0, 3, 1, 2)

    def _operand(self, index: int, rank: int):
        value = self.constant(index)
        if value is None:
            return index
        return self.add_weight(f"t{index}", self._to_nchw_constant(value.astype(np.float32), rank))

    def op_prelu(self, op, ins, outs) -> None:
        rank = len(self.shape(ins[0]))
        alpha = self.constant(ins[1])
        if alpha is None:
            raise ConversionError("PRELU with a non-constant alpha is not supported")
        alpha = self._to_nchw_constant(alpha.astype(np.float32), rank)
        self._emit(op="prelu", inputs=[ins[0]], outputs=outs, alpha=self.add_weight(f"t{ins[1]}", alpha))

    def _binary(self, op, ins, outs, kind, options_cls) -> None:
        rank = len(self.shape(outs[0]))
        operands = [self._operand(i, rank) for i in ins]
        activation = _activation(self._options(op, options_cls).FusedActivationFunction(), kind.upper())
        self._emit(
            op=kind,
            inputs=[o for o in operands if isinstance(o, int)],
            operands=operands,
            outputs=outs,
            activation=activation,
        )

    def op_add(self, op, ins, outs) -> None:
        self._binary(op, ins, outs, "add", self.tflite.AddOptions)

    def op_mul(self, op, ins, outs) -> None:
        self._binary(op, ins, outs, "mul", self.tflite.MulOptions)

    def op_strided_slice(self, op, ins, outs) -> None:
        # Only the identity slice (the attention mesh's output_mesh_identity) is translated.
        shape = self.shape(ins[0])
        begin, end, strides = (self.constant(i) for i in ins[1:4])
        options = self._options(op, self.tflite.StridedSliceOptions)
        identity = (
            begin is not None
            and end is not None
            and strides is not None
            and not any(begin.tolist())
            and end.tolist() == shape
            and all(s == 1 for s in strides.tolist())
            and options.ShrinkAxisMask() == 0
        )
        if not identity:
            raise ConversionError("STRIDED_SLICE other than the identity slice is not supported")
        self._unary(ins, outs, "none")

    def op_custom(self, op, ins, outs) -> None:
        """MediaPipe's attention-mesh ops (mediapipe/util/tflite/operations/*.cc, version 2)."""
        from flatbuffers import flexbuffers  # the tflite reader's own dependency

        code = self.model.OperatorCodes(op.OpcodeIndex())
        name, version = code.CustomCode().decode(), code.Version()
        raw = op.CustomOptionsAsNumpy()
        options = {} if isinstance(raw, int) else flexbuffers.Loads(bytes(raw.tobytes()))
        if version != 2:
            raise ConversionError(f"custom op {name} version {version} is not supported (only 2)")
        if name == "Landmarks2TransformMatrix":
            self._emit(
                op="landmarks_to_matrix",
                inputs=[ins[0]],
                outputs=outs,
                subset=[int(i) for i in options["subset_idxs"]],  # an odd last index pairs with itself
                left=int(options["left_rotation_idx"]),
                right=int(options["right_rotation_idx"]),
                target_rotation=float(options["target_rotation_radians"]),
                output_size=[int(options["output_height"]), int(options["output_width"])],
                scale=[float(options["scale_x"]), float(options["scale_y"])],
            )
        elif name == "TransformTensorBilinear":
            self._emit(
                op="transform_tensor_bilinear",
                inputs=ins[:2],
                outputs=outs,
                input_size=self.shape(ins[0])[1:3],
                output_size=[int(options["output_height"]), int(options["output_width"])],
            )
        elif name == "TransformLandmarks":
            dims = self.shape(ins[0])[-1]
            if dims not in (2, 3):
                raise ConversionError(f"TransformLandmarks with {dims} dimensions is not supported")
            self._emit(op="transform_landmarks", inputs=ins[:2], outputs=outs, dimensions=dims)
        else:
            raise ConversionError(f"custom op {name} is not supported")

    def _unary(self, ins, outs, kind) -> None:
        self._emit(op="activation", inputs=[ins[0]], outputs=outs, activation=kind)

    def op_relu(self, op, ins, outs) -> None:
        self._unary(ins, outs, "relu")

    def op_max_pool_2d(self, op, ins, outs) -> None:
        options = self._options(op, self.tflite.Pool2DOptions)
        in_shape = self.shape(ins[0])
        kernel = (options.FilterHeight(), options.FilterWidth())
        stride = (options.StrideH(), options.StrideW())
        if options.Padding() == self.tflite.Padding.SAME:
            top, bottom = same_padding(in_shape[1], kernel[0], stride[0], 1)
            left, right = same_padding(in_shape[2], kernel[1], stride[1], 1)
        else:
            top = bottom = left = right = 0
        self._emit(
            op="max_pool2d",
            inputs=[ins[0]],
            outputs=outs,
            kernel=list(kernel),
            stride=list(stride),
            pad=[left, right, top, bottom],
            activation=_activation(options.FusedActivationFunction(), "MAX_POOL_2D"),
        )

    def op_pad(self, op, ins, outs) -> None:
        paddings = self.constant(ins[1])
        if paddings is None:
            raise ConversionError("PAD with non-constant paddings is not supported")
        paddings = paddings.reshape(-1, 2).astype(int).tolist()
        if len(paddings) == 4:  # NHWC -> NCHW order, then F.pad's last-dim-first order
            paddings = [paddings[0], paddings[3], paddings[1], paddings[2]]
        if paddings[0] != [0, 0]:
            raise ConversionError("PAD on the batch dimension is not supported")
        flat = [p for pair in reversed(paddings[1:]) for p in pair]
        self._emit(op="pad", inputs=[ins[0]], outputs=outs, pad=flat)

    def op_reshape(self, op, ins, outs) -> None:
        in_rank = len(self.shape(ins[0]))
        out_shape = self.shape(outs[0])
        self._emit(
            op="reshape",
            inputs=[ins[0]],
            outputs=outs,
            shape=out_shape[1:],
            in_nchw=in_rank == 4,
            out_nchw=len(out_shape) == 4,
        )

    def op_concatenation(self, op, ins, outs) -> None:
        options = self._options(op, self.tflite.ConcatenationOptions)
        rank = len(self.shape(outs[0]))
        axis = options.Axis() % rank
        if rank == 4:
            axis = {0: 0, 1: 2, 2: 3, 3: 1}[axis]
        if axis == 0:
            raise ConversionError("CONCATENATION on the batch axis is not supported")
        operands = [self._operand(i, rank) for i in ins]
        if any(not isinstance(o, int) for o in operands):
            raise ConversionError("CONCATENATION with constant inputs is not supported")
        self._emit(
            op="concat",
            inputs=ins,
            outputs=outs,
            axis=axis,
            activation=_activation(options.FusedActivationFunction(), "CONCATENATION"),
        )


def convert_tflite(path: str | Path) -> ConvertedGraph:
    path = Path(path)
    return convert_tflite_bytes(path.read_bytes(), path.name)


def convert_tflite_bytes(buf: bytes, source: str) -> ConvertedGraph:
    return _Reader(buf, source).convert()


def save_converted(graph: ConvertedGraph, path: str | Path) -> None:
    from safetensors.numpy import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(graph.weights, str(path), metadata={PROGRAM_METADATA_KEY: json.dumps(graph.program())})
    path.chmod(0o644)  # read by the image's unprivileged user, whoever ran the build
