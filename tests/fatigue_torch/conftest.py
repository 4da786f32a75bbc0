"""Fixtures: the models converted once per session from the installed mediapipe wheel, the torch
engine on them, and the MediaPipe reference solutions."""

from __future__ import annotations

import pytest
from fatigue import images


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory):
    from shared_vision.sources import MODELS, read_model
    from shared_vision.tflite_convert import convert_tflite_bytes, save_converted

    out = tmp_path_factory.mktemp("face_mesh_torch")
    for name in MODELS:
        save_converted(convert_tflite_bytes(read_model(name), name), out / f"{name}.safetensors")
    return out


@pytest.fixture(scope="session")
def torch_engine(weights_dir):
    from vigil_fatigue.torch_engine.engine import TorchLandmarkEngine

    engine = TorchLandmarkEngine(weights_dir, device="cpu", max_faces=4)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def iris_engine(weights_dir):
    """The plain mesh refined by the iris model (refinement="iris"), MediaPipe's legacy iris graph."""
    from vigil_fatigue.torch_engine.engine import TorchLandmarkEngine

    engine = TorchLandmarkEngine(weights_dir, device="cpu", max_faces=4, refinement="iris")
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def plain_engine(weights_dir):
    """The 468-point mesh without the iris refinement (what MediaPipe's plain FaceMesh gives)."""
    from vigil_fatigue.torch_engine.engine import TorchLandmarkEngine

    engine = TorchLandmarkEngine(weights_dir, device="cpu", max_faces=4, refine_eyes=False, warmup=False)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def mp_refined_mesh():
    """MediaPipe's refine_landmarks=True (attention mesh): the accuracy reference for eye state."""
    from mediapipe.python.solutions import face_mesh

    mesh = face_mesh.FaceMesh(
        static_image_mode=True, max_num_faces=4, refine_landmarks=True, min_detection_confidence=0.5
    )
    yield mesh
    mesh.close()


@pytest.fixture(scope="session")
def iris_interpreter():
    """MediaPipe's iris_landmark.tflite in the TFLite interpreter (the unconverted model)."""
    from ai_edge_litert.interpreter import Interpreter

    from shared_vision.sources import read_model

    interpreter = Interpreter(model_content=read_model("iris_landmark"), num_threads=1)
    interpreter.allocate_tensors()
    return interpreter


@pytest.fixture(scope="session")
def mp_face_mesh():
    from mediapipe.python.solutions import face_mesh

    # The plain 468-point model (refine_landmarks=False).
    mesh = face_mesh.FaceMesh(
        static_image_mode=True, max_num_faces=4, refine_landmarks=False, min_detection_confidence=0.5
    )
    yield mesh
    mesh.close()


@pytest.fixture(scope="session")
def mp_face_detection():
    from mediapipe.python.solutions import face_detection

    detector = face_detection.FaceDetection(model_selection=0, min_detection_confidence=0.5)
    yield detector
    detector.close()


@pytest.fixture(scope="session")
def astronaut():
    return images.astronaut_bgr()


@pytest.fixture(scope="session")
def astronaut_closed(astronaut, plain_engine):
    faces = plain_engine.detect([astronaut])[0]
    assert len(faces) == 1
    return images.close_eyes(astronaut, faces[0].points)


@pytest.fixture(scope="session")
def parity_images(astronaut, astronaut_closed):
    out = dict(images.variants(astronaut))
    out.update(
        {
            f"closed_{k}": v
            for k, v in images.variants(astronaut_closed).items()
            if k in ("original", "rotated_15", "scaled_0.5")
        }
    )
    return out
