"""Converter and graph loader: what a converted file holds, and how bad input is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from shared_vision.graph import load_graph
from shared_vision.sources import read_model
from shared_vision.tflite_convert import (
    PROGRAM_METADATA_KEY,
    ConversionError,
    convert_tflite_bytes,
)


def test_fp16_weights_are_folded_to_float32():
    graph = convert_tflite_bytes(read_model("face_landmark"), "face_landmark")
    kinds = {op["op"] for op in graph.ops}
    assert kinds == {"conv2d", "prelu", "add", "max_pool2d", "pad"}  # no DEQUANTIZE left
    assert all(w.dtype == np.float32 for w in graph.weights.values())
    first_conv = graph.ops[0]
    assert graph.weights[first_conv["weight"]].shape == (16, 3, 3, 3)  # OHWI -> OIHW
    assert first_conv["pad"] == [0, 1, 0, 1]  # SAME, stride 2 on 192: the extra pixel after


def test_depthwise_weights_become_grouped_convs():
    graph = convert_tflite_bytes(read_model("face_detection_short_range"), "det")
    depthwise = [op for op in graph.ops if op["op"] == "conv2d" and op["groups"] > 1]
    assert depthwise
    for op in depthwise:
        assert graph.weights[op["weight"]].shape[1] == 1


def _with_opcode_replaced(buf: bytes, old: int, new: int) -> bytes:
    """The model with every operator of builtin code `old` relabelled `new` (int8 legacy field)."""
    import tflite

    patched = bytearray(buf)
    model = tflite.Model.GetRootAsModel(patched, 0)
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        if code.DeprecatedBuiltinCode() == old and code.BuiltinCode() in (0, old):
            patched[code._tab.Pos + code._tab.Offset(4)] = new
    return bytes(patched)


def test_unsupported_op_is_refused_by_name():
    import tflite

    buf = _with_opcode_replaced(
        read_model("face_detection_short_range"), tflite.BuiltinOperator.PAD, tflite.BuiltinOperator.SQRT
    )
    with pytest.raises(ConversionError, match="SQRT is not supported"):
        convert_tflite_bytes(buf, "patched")


def test_load_graph_refuses_missing_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="convert_tflite"):
        load_graph(tmp_path / "absent.safetensors")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(ValueError, match=PROGRAM_METADATA_KEY):
        load_graph(tmp_path / "foreign.safetensors")


def test_load_graph_refuses_other_format_versions(tmp_path, weights_dir):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(weights_dir / "iris_landmark.safetensors"), framework="pt") as f:
        program = json.loads(f.metadata()[PROGRAM_METADATA_KEY])
        weights = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    program["format"] = "999"
    save_file(weights, str(tmp_path / "future.safetensors"), metadata={PROGRAM_METADATA_KEY: json.dumps(program)})
    with pytest.raises(ValueError, match="format"):
        load_graph(tmp_path / "future.safetensors")


def test_graph_rows_are_independent(weights_dir):
    graph = load_graph(weights_dir / "face_detection_short_range.safetensors")
    x = torch.from_numpy(np.random.default_rng(1).uniform(-1, 1, (3, 128, 128, 3)).astype(np.float32))
    with torch.inference_mode():
        together = graph(x)
        alone = graph(x[1:2])
    for a, b in zip(together, alone, strict=True):
        assert torch.allclose(a[1:2], b, atol=1e-4)
    with pytest.raises(ValueError, match="expected 1 inputs"):
        graph(x, x)
