"""The attention mesh on torch (the default refinement): 478 points against MediaPipe's own
refine_landmarks=True pipeline, at every batch size; its converted custom ops; the lane merge."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fatigue import images
from fatigue_torch.reference import mp_meshes

from shared_vision.graph import load_graph
from shared_vision.lanes import fuse_parallel_branches
from shared_vision.sources import read_model
from shared_vision.tflite_convert import convert_tflite_bytes
from vigil_fatigue.torch_engine import attention

TOLERANCE_PX = 0.5  # the bar; measured ~0.002 px
IMAGE_NAMES = [
    "original",
    "rotated_-30",
    "rotated_15",
    "scaled_0.5",
    "scaled_1.5",
    "closed_original",
    "closed_rotated_15",
]


def test_refinement_tables_match_mediapipe():
    assert len(attention.LIPS_REFINED_INDICES) == len(set(attention.LIPS_REFINED_INDICES)) == 80
    refined = set(attention.LIPS_REFINED_INDICES) | set(attention.LEFT_EYE_REFINED_INDICES)
    assert len(refined | set(attention.RIGHT_EYE_REFINED_INDICES)) == 80 + 71 + 71


@pytest.fixture(scope="module")
def references(parity_images, mp_refined_mesh):
    return {name: mp_meshes(mp_refined_mesh, parity_images[name])[0] for name in IMAGE_NAMES}


@pytest.mark.parametrize("name", IMAGE_NAMES)
def test_478_points_match_mediapipe_refined(name, parity_images, references, torch_engine):
    points = torch_engine.detect([parity_images[name]])[0][0].points
    assert points.shape == (478, 3)
    errors = np.linalg.norm(points[:, :2] - references[name][:, :2], axis=1)
    assert errors.max() < TOLERANCE_PX, f"max {errors.max():.3f} px at point {errors.argmax()}"
    assert np.abs(points[:, 2] - references[name][:, 2]).max() < TOLERANCE_PX


def test_parity_holds_across_batch_sizes(parity_images, references, torch_engine):
    """Batches of 7, 1, 3, 1, 7 (a traced graph compiles per shape: each must be right)."""
    for names in (IMAGE_NAMES, IMAGE_NAMES[:1], IMAGE_NAMES[2:5], IMAGE_NAMES[1:2], IMAGE_NAMES):
        results = torch_engine.detect([parity_images[name] for name in names])
        for faces, name in zip(results, names, strict=True):
            errors = np.linalg.norm(faces[0].points[:, :2] - references[name][:, :2], axis=1)
            assert errors.max() < TOLERANCE_PX, f"{name} in a batch of {len(names)}: {errors.max():.3f} px"


def test_two_faces_are_refined_like_mediapipe(astronaut, torch_engine, mp_refined_mesh):
    image = images.two_faces(astronaut)
    expected = sorted(mp_meshes(mp_refined_mesh, image), key=lambda p: p[:, 0].mean())
    got = sorted((f.points for f in torch_engine.detect([image])[0]), key=lambda p: p[:, 0].mean())
    assert len(got) == len(expected) == 2
    for a, b in zip(got, expected, strict=True):
        assert np.linalg.norm(a[:, :2] - b[:, :2], axis=1).max() < TOLERANCE_PX


# ---- converter and runtime --------------------------------------------------------------------


@pytest.fixture(scope="module")
def attention_graph(weights_dir):
    return load_graph(weights_dir / "face_landmark_with_attention.safetensors")


def test_attention_custom_ops_are_converted():
    graph = convert_tflite_bytes(read_model("face_landmark_with_attention"), "attention")
    kinds = [op["op"] for op in graph.ops]
    assert kinds.count("landmarks_to_matrix") == 3
    assert kinds.count("transform_tensor_bilinear") == 3
    assert kinds.count("transform_landmarks") == 5
    crop = next(op for op in graph.ops if op["op"] == "landmarks_to_matrix")
    assert crop["output_size"] == [16, 16] and crop["scale"] == [1.5, 1.5]
    assert [o["name"] for o in graph.outputs][:2] == ["output_mesh_identity", "output_lips"]


def test_lane_merge_matches_the_op_by_op_graph(attention_graph):
    torch.manual_seed(0)
    x = torch.rand(3, 192, 192, 3)
    merged = fuse_parallel_branches(attention_graph, x[:1])
    assert merged.merged_ops > 200  # the lips and eye sub-networks run as one
    with torch.inference_mode():
        for a, b in zip(merged(x), attention_graph(x), strict=True):
            assert (a - b).abs().max() < 1e-3


def test_crop_op_zeroes_samples_outside_the_map(attention_graph):
    """TransformTensorBilinear: positions beyond [0, size-1] read 0 (not the border blend)."""
    op = next(op for op in attention_graph.ops if op["op"] == "transform_tensor_bilinear")
    crop = attention_graph._transform_tensor_bilinear(op)
    feature = torch.ones(1, 2, 48, 48)
    shift = torch.eye(4)[None].clone()
    shift[0, 0, 3] = 40.0  # x = out_x + 40: the crop's right 8 columns fall off the 48-wide map
    out = crop(feature, shift)
    assert out.shape == (1, 2, 16, 16)
    assert torch.all(out[..., :7] == 1) and torch.all(out[..., 8:] == 0)
