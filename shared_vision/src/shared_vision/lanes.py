"""Parallel branches of a converted graph run as one: "lanes" stacked on the channel axis.

MediaPipe's attention mesh runs three identical sub-networks (lips, left eye, right eye; five
lanes after the eyes fork into contour and iris heads) on 16x16 crops. Op by op that is ~220
tiny kernels whose fixed cost per call dominates on CPU. Here ops at the same depth of the graph
with the same kind, attributes and input shape are merged: their inputs are concatenated on the
channel axis and a grouped convolution (weights concatenated, groups x lanes), a per-channel
PReLU (slopes concatenated), an add or a pool runs once for all lanes. Each lane's numbers are
those of its own op (grouped convolution keeps the lanes apart), so outputs match the op-by-op
graph to float rounding.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable

import torch
import torch.nn.functional as F
from torch import nn

from .graph import TFLiteGraph, _activate


def _record_shapes(graph: TFLiteGraph, example: torch.Tensor) -> dict[int, tuple[int, ...]]:
    """Shape (without the batch dimension) of every value, from one op-by-op run."""
    values: dict[int, torch.Tensor] = {}
    for spec, x in zip(graph.input_specs, (example,), strict=True):
        values[spec["id"]] = x.permute(0, 3, 1, 2) if x.dim() == 4 else x
    with torch.no_grad():
        for fn, ins, out in graph._steps:
            values[out] = fn(*(values[i] for i in ins))
    return {key: tuple(value.shape[1:]) for key, value in values.items()}


class LaneGraph(nn.Module):
    """A TFLiteGraph's program with its parallel branches merged (see the module docstring)."""

    def __init__(self, graph: TFLiteGraph, example: torch.Tensor):
        super().__init__()
        self.graph = graph
        self.input_specs, self.output_specs = graph.input_specs, graph.output_specs
        self._shapes = _record_shapes(graph, example)
        self._plan: list[tuple[Callable, list[Hashable], list[Hashable]]] = []
        self._stacks: dict[str, list[int]] = {}  # stack key -> member value ids, in channel order
        self._member_of: dict[int, str] = {}
        self._loose: set[int] = {spec["id"] for spec in graph.input_specs}  # values held one by one
        self.merged_ops = 0
        self._build()

    # -- planning ------------------------------------------------------------------------------
    def _build(self) -> None:
        ops, steps = self.graph.ops, self.graph._steps
        producer = {op["outputs"][0]: k for k, op in enumerate(ops)}
        depth: list[int] = []
        for op in ops:
            depth.append(1 + max((depth[producer[i]] for i in op["inputs"] if i in producer), default=-1))
        for level in sorted(set(depth)):
            buckets: OrderedDict[Hashable, list[int]] = OrderedDict()
            for k, op in enumerate(ops):
                if depth[k] == level:
                    signature = self._signature(op)
                    buckets.setdefault(signature if signature is not None else ("single", k), []).append(k)
            for signature, members in buckets.items():
                if signature[0] == "single" or len(members) < 2:
                    for k in members:
                        self._emit_single(steps[k], ops[k])
                else:
                    self._emit_lanes([ops[k] for k in members], [steps[k] for k in members])
        for spec in self.output_specs:
            self._loosen(spec["id"])

    def _signature(self, op: dict) -> Hashable | None:
        kind, ins = op["op"], op["inputs"]
        if len(self._shapes[ins[0]]) != 3:
            return None
        shape = self._shapes[ins[0]]
        if kind == "conv2d":
            w = self.graph._weight(op["weight"])
            return (kind, shape, tuple(w.shape), op["bias"] is None, tuple(op["stride"]), tuple(op["dilation"]),
                    op["groups"], tuple(op["pad"]), op["activation"])  # fmt: skip
        if kind == "prelu":
            alpha = self.graph._weight(op["alpha"])
            per_channel = alpha.dim() == 4 and alpha.shape[0] == alpha.shape[2] == alpha.shape[3] == 1
            return (kind, shape) if per_channel else None
        if kind == "add" and all(isinstance(o, int) for o in op["operands"]) and len(ins) == 2:
            return (kind, shape, self._shapes[ins[1]], op["activation"])
        if kind == "max_pool2d":
            return (kind, shape, tuple(op["kernel"]), tuple(op["stride"]), tuple(op["pad"]), op["activation"])
        if kind == "pad" and len(op["pad"]) == 6:
            return (kind, shape, tuple(op["pad"]))
        return None

    def _loosen(self, value: int) -> None:
        """Make `value` available on its own (split its stack once)."""
        if value in self._loose:
            return
        key = self._member_of[value]
        members = self._stacks[key]
        channels = self._shapes[members[0]][0]
        self._plan.append((lambda x, c=channels: torch.split(x, c, dim=1), [key], list(members)))
        self._loose.update(members)

    def _stack(self, values: list[int]) -> str:
        for key, members in self._stacks.items():
            if members == values:
                return key
        for value in values:
            self._loosen(value)
        key = f"stack{len(self._stacks)}"
        self._plan.append((lambda *xs: torch.cat(xs, dim=1), list(values), [key]))
        self._stacks[key] = list(values)
        return key

    def _emit_single(self, step, op: dict) -> None:
        fn, ins, out = step
        if self._full_extent(op):
            fn = self._dense_fn(op)
        for value in ins:
            self._loosen(value)
        self._plan.append((fn, list(ins), [out]))
        self._loose.add(out)

    def _full_extent(self, op: dict) -> bool:
        """A convolution whose one window covers its whole unpadded input (the landmark heads)."""
        if op["op"] != "conv2d" or any(op["pad"]) or op["groups"] != 1:
            return False
        shape = self._shapes[op["inputs"][0]]
        return len(shape) == 3 and tuple(self.graph._weight(op["weight"]).shape[2:]) == shape[1:]

    def _dense_fn(self, op: dict) -> Callable:
        """That convolution as one matrix product: torch's conv path for a 1x1 output is slow."""
        name = f"_dense{op['outputs'][0]}"
        weight = self.graph._weight(op["weight"])
        self.register_buffer(name + "_w", weight.reshape(weight.shape[0], -1).contiguous())
        bias, act = op["bias"], op["activation"]

        def dense(x):
            b = None if bias is None else self.graph._weight(bias)
            y = F.linear(x.reshape(x.shape[0], -1), getattr(self, name + "_w"), b)
            return _activate(y[:, :, None, None], act)

        return dense

    def _emit_lanes(self, ops: list[dict], steps) -> None:
        first, lanes = ops[0], len(ops)
        positions = len(first["inputs"])
        inputs = [self._stack([op["inputs"][p] for op in ops]) for p in range(positions)]
        key = f"stack{len(self._stacks)}"
        self._stacks[key] = [op["outputs"][0] for op in ops]
        for op in ops:
            self._member_of[op["outputs"][0]] = key
        self._plan.append((self._lane_fn(ops, steps), inputs, [key]))
        self.merged_ops += lanes

    def _lane_fn(self, ops: list[dict], steps) -> Callable:
        first, kind, lanes = ops[0], ops[0]["op"], len(ops)
        name = f"_lane{len(self._stacks)}"
        if kind == "conv2d":
            # Grouped: each lane's filters see only its own channels. (A batched-matmul form of
            # the 1x1 lanes was as fast and is miscomputed by oneDNN graph fusion: not used.)
            self.register_buffer(name + "_w", torch.cat([self.graph._weight(op["weight"]) for op in ops]))
            has_bias = first["bias"] is not None
            if has_bias:
                self.register_buffer(name + "_b", torch.cat([self.graph._weight(op["bias"]) for op in ops]))
            left, right, top, bottom = first["pad"]
            stride, dilation, act = tuple(first["stride"]), tuple(first["dilation"]), first["activation"]
            groups = first["groups"] * lanes
            symmetric = left == right and top == bottom

            def conv(x):
                if not symmetric:
                    x = F.pad(x, (left, right, top, bottom))
                bias = getattr(self, name + "_b") if has_bias else None
                y = F.conv2d(x, getattr(self, name + "_w"), bias, stride, (top, left) if symmetric else 0,
                             dilation, groups)  # fmt: skip
                return _activate(y, act)

            return conv
        if kind == "prelu":
            self.register_buffer(name + "_a", torch.cat([self.graph._weight(op["alpha"]).reshape(-1) for op in ops]))
            return lambda x: F.prelu(x, getattr(self, name + "_a"))
        if kind in ("add", "max_pool2d"):
            return steps[0][0]  # elementwise / per channel: the single op's function applies as is
        if kind == "pad":
            pad, channels = tuple(first["pad"]), self._shapes[first["inputs"][0]][0]

            def pad_lanes(x):
                b, _, h, w = x.shape
                y = F.pad(x.reshape(b, lanes, channels, h, w), pad)
                return y.reshape(b, -1, y.shape[-2], y.shape[-1])

            return pad_lanes
        raise AssertionError(kind)

    # -- running -------------------------------------------------------------------------------
    def forward(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        values: dict = {}
        for spec, x in zip(self.input_specs, inputs, strict=True):
            values[spec["id"]] = x.permute(0, 3, 1, 2) if x.dim() == 4 else x
        for fn, ins, outs in self._plan:
            result = fn(*(values[i] for i in ins))
            if len(outs) == 1:
                values[outs[0]] = result
            else:
                values.update(zip(outs, result, strict=True))
        outputs = []
        for spec in self.output_specs:
            y = values[spec["id"]]
            outputs.append(y.permute(0, 2, 3, 1) if y.dim() == 4 else y)
        return outputs


def fuse_parallel_branches(graph: TFLiteGraph, example: torch.Tensor) -> LaneGraph:
    """`graph` with same-depth, same-shape parallel ops merged; `example` is one NHWC input."""
    return LaneGraph(graph, example).eval()
