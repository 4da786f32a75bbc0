"""EEG hot reload of the optional TorchScript model: two modules the test builds, sessions go on."""

from __future__ import annotations

import time

import pytest
import torch
from eeg import samples

from shared_protocol.reload import model_digest
from shared_protocol.testing import BackendTestClient
from vigil_eeg.backend import EEGBackend
from vigil_eeg.learned_model import FEATURE_NAMES
from vigil_eeg.settings import EEGSettings

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


def _save(path, seed: int, outputs: int):
    torch.manual_seed(seed)
    torch.jit.script(torch.nn.Sequential(torch.nn.Linear(len(FEATURE_NAMES), outputs), torch.nn.Sigmoid())).save(
        str(path)
    )
    return path


def _chunk(t: float) -> dict:
    data = samples.valid_data()
    data["timestamp"] = t
    return data


def _wait(client: BackendTestClient) -> dict:
    deadline = time.monotonic() + 60
    while (model := client.health_check()["model"])["reload"]["state"] == "loading":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return model


def test_swap_between_two_modules_and_back(tmp_path):
    one = _save(tmp_path / "one.pt", seed=0, outputs=1)
    two = _save(tmp_path / "two.pt", seed=1, outputs=3)
    with BackendTestClient(EEGBackend("127.0.0.1", 0, settings=EEGSettings(model_path=str(one)))) as client:
        first = client.request(_chunk(1000.0))
        assert first["model_version"] == model_digest(one) and len(first["data"]["learned_model"]["output"]) == 1

        assert client.send({"type": "reload_model", "path": str(two)})["type"] == "reload_accepted"
        model = _wait(client)
        assert model["reload"]["state"] == "idle" and model["learned_model"] == str(two)
        second = client.request(_chunk(1004.0))
        assert second["model_version"] == model_digest(two)
        assert len(second["data"]["learned_model"]["output"]) == 3  # the other module answers
        # The stream's session went on across the swap: samples keep adding up.
        assert second["data"]["samples_received"] == 2 * first["data"]["samples_received"]

        assert client.send({"type": "reload_model", "version": model_digest(one)})["type"] == "reload_accepted"
        assert _wait(client)["version"] == model_digest(one)
        third = client.request(_chunk(1008.0))
        assert third["data"]["learned_model"]["output"][0] == pytest.approx(
            first["data"]["learned_model"]["output"][0], abs=0.2
        )
        assert third["data"]["samples_received"] == 3 * first["data"]["samples_received"]


def test_module_with_the_wrong_input_keeps_the_old_one(tmp_path):
    one = _save(tmp_path / "one.pt", seed=0, outputs=1)
    wrong = tmp_path / "wrong.pt"
    torch.jit.script(torch.nn.Linear(3, 1)).save(str(wrong))
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(one.read_bytes()[:100])
    with BackendTestClient(EEGBackend("127.0.0.1", 0, settings=EEGSettings(model_path=str(one)))) as client:
        for bad, reason in ((wrong, "does not accept"), (corrupt, "")):
            assert client.send({"type": "reload_model", "path": str(bad)})["type"] == "reload_accepted"
            model = _wait(client)
            assert model["reload"]["state"] == "failed" and reason in model["reload"]["error"]
            assert model["version"] == model_digest(one)
        assert client.request(_chunk(1000.0))["model_version"] == model_digest(one)


def test_without_a_model_path_a_reload_needs_a_repository(tmp_path):
    one = _save(tmp_path / "one.pt", seed=0, outputs=1)
    with BackendTestClient(EEGBackend("127.0.0.1", 0, settings=EEGSettings())) as client:
        reply = client.send({"type": "reload_model", "path": str(one)})
        assert reply["code"] == "bad_request" and "outside the model repository" in reply["error"]
    settings = EEGSettings(model_repository=str(tmp_path))
    with BackendTestClient(EEGBackend("127.0.0.1", 0, settings=settings, model_repository=str(tmp_path))) as client:
        assert client.send({"type": "reload_model", "path": str(one)})["type"] == "reload_accepted"
        assert _wait(client)["learned_model"] == str(one)
        assert client.request(_chunk(1000.0))["data"]["learned_model"] is not None
