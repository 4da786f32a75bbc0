"""TorchLandmarkEngine construction options and bad frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shared_vision.runtime import resolve_device
from vigil_fatigue.torch_engine.engine import TorchLandmarkEngine


@pytest.mark.parametrize(
    ("frame", "label"),
    [
        (np.zeros((64, 64, 3), np.float32), "float frame"),
        (np.zeros((64, 64), np.uint8), "grayscale"),
        (np.zeros((64, 64, 4), np.uint8), "BGRA"),
        (np.zeros((0, 64, 3), np.uint8), "empty"),
        ("not an array", "string"),
    ],
)
def test_bad_frames_are_refused_with_their_index(torch_engine, frame, label):
    good = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match=r"frames\[1\]"):
        torch_engine.detect([good, frame])
    with pytest.raises(ValueError, match=r"frames\[0\]"):
        torch_engine.detect_faces([frame])


def test_empty_call_returns_nothing(torch_engine):
    assert torch_engine.detect([]) == []
    assert torch_engine.detect_faces([]) == []


def test_device_resolution():
    assert resolve_device("auto") == torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            resolve_device("cuda")


def test_engine_reports_its_device(torch_engine):
    assert torch_engine.device == torch.device("cpu")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"max_faces": 0}, "max_faces"), ({"min_detection_confidence": 1.5}, "min_detection_confidence")],
)
def test_bad_options(weights_dir, kwargs, field):
    with pytest.raises(ValueError, match=field):
        TorchLandmarkEngine(weights_dir, device="cpu", warmup=False, jit=False, **kwargs)


def test_missing_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="face_detection_short_range"):
        TorchLandmarkEngine(tmp_path, device="cpu")


def test_eager_and_jit_agree_and_close_is_final(weights_dir, torch_engine, astronaut):
    eager = TorchLandmarkEngine(weights_dir, device="cpu", jit=False, warmup=False)
    a, b = eager.detect([astronaut])[0], torch_engine.detect([astronaut])[0]
    assert len(a) == len(b) == 1
    # Mesh points agree to ~1e-5 px; the refined eye points, cropped nearest-neighbour from ROIs
    # placed by those points, to ~0.02 px.
    from vigil_fatigue.torch_engine import iris

    mesh_only = np.setdiff1d(np.arange(468), iris.LEFT_EYE_REFINED_INDICES + iris.RIGHT_EYE_REFINED_INDICES)
    assert np.abs(a[0].points[mesh_only] - b[0].points[mesh_only]).max() < 1e-2
    assert np.abs(a[0].points - b[0].points).max() < 0.1
    eager.close()
    with pytest.raises(RuntimeError, match="closed"):
        eager.detect([astronaut])


def test_factory_uses_service_settings(weights_dir, astronaut):
    from vigil_fatigue.settings import FatigueSettings
    from vigil_fatigue.torch_engine.factory import torch_engine_factory

    settings = FatigueSettings(
        engine="torch",
        torch_weights_dir=str(weights_dir),
        device="cpu",
        max_faces=2,
        min_detection_confidence=0.6,
    )
    engine = torch_engine_factory(settings)
    try:
        assert (engine.max_faces, engine.min_detection_confidence) == (2, 0.6)
        assert str(engine.device) == "cpu"
        assert len(engine.detect([astronaut])[0]) == 1
    finally:
        engine.close()
    with pytest.raises(ValueError, match="face_detection_model"):
        torch_engine_factory(FatigueSettings(face_detection_model=1))
    with pytest.raises(ValueError, match="face_detection_model"):
        FatigueSettings(engine="torch", face_detection_model=1)
    with pytest.raises(FileNotFoundError):
        torch_engine_factory(FatigueSettings(engine="torch", torch_weights_dir=str(weights_dir / "nowhere")))


def test_degenerate_frames_give_no_faces(torch_engine):
    frames = [
        np.zeros((1, 1, 3), np.uint8),
        np.zeros((2000, 10, 3), np.uint8),
        np.full((1024, 1024, 3), 255, np.uint8),
        np.asfortranarray(np.zeros((50, 60, 3), np.uint8)),
    ]
    assert torch_engine.detect(frames) == [[], [], [], []]
