"""Level 1: each converted torch graph vs the TFLite interpreter on identical input tensors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from shared_vision.graph import load_graph
from shared_vision.sources import MODELS, read_model

# Worst |torch - TFLite| over outputs whose values reach ~150 (landmark pixels, box offsets):
# float32 summation-order noise is ~1e-4; a wrong pad, weight layout or activation is >> 1e-2.
MAX_ABS_DIFF = 2e-3


def _interpreter(name: str):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=read_model(name), num_threads=1)
    interpreter.allocate_tensors()
    return interpreter


def _inputs(shape: list[int], astronaut: np.ndarray, value_range: tuple[float, float]) -> dict[str, np.ndarray]:
    low, high = value_range
    photo = cv2.resize(astronaut[0:260, 100:360, ::-1], (shape[2], shape[1]), interpolation=cv2.INTER_AREA)
    return {
        "photo": (photo.astype(np.float32) / 255.0 * (high - low) + low)[None],
        "noise": np.random.default_rng(7).uniform(low, high, shape).astype(np.float32),
    }


@pytest.mark.parametrize(
    ("name", "value_range"),
    [("face_detection_short_range", (-1.0, 1.0)), ("face_landmark", (0.0, 1.0)), ("iris_landmark", (0.0, 1.0))],
)
def test_torch_graph_matches_tflite(name, value_range, weights_dir, astronaut):
    interpreter = _interpreter(name)
    graph = load_graph(weights_dir / f"{name}.safetensors")
    (input_detail,) = interpreter.get_input_details()
    for label, x in _inputs(list(input_detail["shape"]), astronaut, value_range).items():
        interpreter.set_tensor(input_detail["index"], x)
        interpreter.invoke()
        expected = {d["name"]: interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()}
        with torch.inference_mode():
            got = graph(torch.from_numpy(x))
        assert {s["name"] for s in graph.output_specs} == set(expected)
        for spec, y in zip(graph.output_specs, got, strict=True):
            ref = expected[spec["name"]]
            assert tuple(y.shape) == ref.shape, (name, spec["name"])
            diff = float(np.abs(y.numpy() - ref).max())
            assert diff < MAX_ABS_DIFF, f"{name}/{spec['name']} on {label}: max |diff| {diff:.2e}"
            assert float(np.abs(ref).max()) > 1.0  # the outputs are not trivially tiny


def test_every_model_of_the_wheel_converts(weights_dir):
    assert sorted(p.stem for p in weights_dir.glob("*.safetensors")) == sorted(MODELS)
