"""Fatigue hot reload: the converted weight directory re-converted and swapped in, same outputs."""

from __future__ import annotations

import shutil
import time

import pytest
from fatigue import samples

from shared_protocol.reload import model_digest
from shared_protocol.testing import BackendTestClient
from vigil_fatigue.backend import FatigueBackend
from vigil_fatigue.settings import FatigueSettings


@pytest.fixture()
def repository(tmp_path, weights_dir):
    from shared_vision.sources import MODELS, read_model
    from shared_vision.tflite_convert import convert_tflite_bytes, save_converted

    shutil.copytree(weights_dir, tmp_path / "v1")
    again = tmp_path / "v2"
    again.mkdir()
    for name in MODELS:  # converted again from the wheel's .tflite files
        save_converted(convert_tflite_bytes(read_model(name), name), again / f"{name}.safetensors")
    return tmp_path


def _wait(client: BackendTestClient) -> dict:
    deadline = time.monotonic() + 120
    while (model := client.health_check()["model"])["reload"]["state"] == "loading":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return model


def _backend(weights) -> FatigueBackend:
    settings = FatigueSettings(engine="torch", torch_weights_dir=str(weights), device="cpu")
    return FatigueBackend("127.0.0.1", 0, settings=settings)


def _frame(t: float) -> dict:
    return {**samples.valid_data(), "timestamp": t, "session_id": "reload"}


def test_reconverted_weights_swap_in_with_the_same_outputs(repository):
    v1, v2 = repository / "v1", repository / "v2"
    assert model_digest(v1) == model_digest(v2)  # the conversion is deterministic: the same version
    (v2 / "NOTES").write_text("re-converted\n")  # a file of its own: a version of its own
    with BackendTestClient(_backend(v1)) as client:
        before = client.request(_frame(0.0))
        assert before["model_version"] == model_digest(v1) and before["data"]["face_detected"]

        assert client.send({"type": "reload_model", "path": str(v2)})["type"] == "reload_accepted"
        model = _wait(client)
        assert model["reload"]["state"] == "idle" and model["version"] == model_digest(v2)
        after = client.request(_frame(0.1))
        assert after["model_version"] == model_digest(v2)
        assert after["data"]["ear"] == pytest.approx(before["data"]["ear"], abs=1e-6)
        assert after["data"]["detection_score"] == pytest.approx(before["data"]["detection_score"], abs=1e-6)
        # The session went on: the second frame extends the first one's span.
        assert before["data"]["session"]["frames"] == 1 and after["data"]["session"]["frames"] == 2
        assert after["data"]["session"]["span_s"] == pytest.approx(0.1)


def test_corrupt_weights_keep_the_old_engine(repository):
    v1 = repository / "v1"
    corrupt = repository / "corrupt"
    shutil.copytree(v1, corrupt)
    for file in corrupt.glob("*.safetensors"):
        file.write_bytes(file.read_bytes()[:1000])  # a half-copied directory
    with BackendTestClient(_backend(v1)) as client:
        assert client.send({"type": "reload_model", "path": str(corrupt)})["type"] == "reload_accepted"
        model = _wait(client)
        assert model["reload"]["state"] == "failed" and model["version"] == model_digest(v1)
        reply = client.request(_frame(0.0))
        assert reply["type"] == "inference_response" and reply["data"]["face_detected"]
