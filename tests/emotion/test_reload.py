"""Emotion hot reload: the ported mini-Xception swapped for a tiny ViT saved with save_pretrained, then back."""

from __future__ import annotations

import shutil
import time

import pytest
from emotion import samples
from emotion.test_generic_transformers import VIT_LABELS, _save_tiny_vit

from shared_protocol.reload import model_digest
from shared_protocol.testing import BackendTestClient
from vigil_emotion.backend import EmotionBackend
from vigil_emotion.settings import EmotionSettings


@pytest.fixture()
def repository(tmp_path, mini_xception_dir):
    """A model repository: one directory per version, as a deployment keeps them."""
    shutil.copytree(mini_xception_dir, tmp_path / "mini_xception")
    _save_tiny_vit(tmp_path / "vit", seed=0, boost_label=VIT_LABELS.index("Surprise"))
    return tmp_path


def _wait(client: BackendTestClient) -> dict:
    deadline = time.monotonic() + 120
    while (model := client.health_check()["model"])["reload"]["state"] == "loading":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return model


def test_swap_to_a_tiny_vit_and_back(repository):
    xception, vit = repository / "mini_xception", repository / "vit"
    settings = EmotionSettings(model_dir=str(xception), device="cpu")
    with BackendTestClient(EmotionBackend("127.0.0.1", 0, settings=settings)) as client:
        first = client.request(samples.valid_data())
        assert first["model_version"] == model_digest(xception)
        assert first["data"]["labels"] != VIT_LABELS and first["data"]["face_detected"]

        assert client.send({"type": "reload_model", "path": str(vit)})["type"] == "reload_accepted"
        model = _wait(client)
        assert model["reload"]["state"] == "idle", model["reload"]
        assert model["version"] == model_digest(vit) and model["model_type"] == "vit"
        reply = client.request(samples.valid_data())
        assert reply["model_version"] == model_digest(vit)
        assert reply["data"]["labels"] == VIT_LABELS
        assert reply["data"]["prediction"] == "Surprise"  # the boosted class of the new model wins
        assert reply["data"]["smoothed"]["restarted"]  # another label set: smoothing starts over

        # Rollback by version: the mini-Xception again, with its own outputs.
        back = client.send({"type": "reload_model", "version": model_digest(xception)})
        assert back["type"] == "reload_accepted"
        assert _wait(client)["version"] == model_digest(xception)
        again = client.request(samples.valid_data())
        assert again["data"]["labels"] == first["data"]["labels"]
        assert again["data"]["faces"][0]["probabilities"] == first["data"]["faces"][0]["probabilities"]


def test_a_directory_that_is_no_image_classifier_keeps_the_old_model(repository):
    xception = repository / "mini_xception"
    broken = repository / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "bert"')  # truncated
    settings = EmotionSettings(model_dir=str(xception), device="cpu")
    with BackendTestClient(EmotionBackend("127.0.0.1", 0, settings=settings)) as client:
        assert client.send({"type": "reload_model", "path": str(broken)})["type"] == "reload_accepted"
        model = _wait(client)
        assert model["reload"]["state"] == "failed" and "config.json" in model["reload"]["error"]
        assert model["version"] == model_digest(xception)
        assert client.request(samples.valid_data())["model_version"] == model_digest(xception)
