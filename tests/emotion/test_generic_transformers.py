"""Any local image-classification checkpoint works: a tiny random ViT saved with save_pretrained."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

from vigil_emotion.analyzer import FrameAnalyzer
from vigil_emotion.classifier import ExpressionClassifier
from vigil_emotion.settings import EmotionSettings

# AffectNet-style spellings, in an order unlike FER2013's, so labels must come from id2label.
VIT_LABELS = ["Neutral", "Happiness", "Sadness", "Surprise", "Fear", "Disgust", "Anger"]


def _save_tiny_vit(path, seed: int, boost_label: int | None = None):
    torch.manual_seed(seed)
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        id2label=dict(enumerate(VIT_LABELS)),
        label2id={label: i for i, label in enumerate(VIT_LABELS)},
    )
    model = ViTForImageClassification(config).eval()
    if boost_label is not None:
        with torch.no_grad():
            model.classifier.bias[boost_label] += 50.0  # this class must now win on any input
    model.save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return model


@pytest.fixture(scope="module")
def vit_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_vit")
    _save_tiny_vit(path, seed=0)
    return path


def test_labels_and_probabilities_come_from_the_checkpoint(vit_dir, astronaut_bgr):
    classifier = ExpressionClassifier(vit_dir, device="cpu")
    assert classifier.model_type == "vit"
    assert classifier.labels == VIT_LABELS
    crops = [astronaut_bgr[60:170, 170:280, ::-1].copy(), astronaut_bgr[300:400, 100:200, ::-1].copy()]
    probs = classifier.predict(crops)
    assert probs.shape == (2, 7)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    # Exactly the checkpoint's own computation: its processor, its weights, softmax.
    inputs = classifier.processor(crops, return_tensors="pt")
    with torch.no_grad():
        expected = torch.softmax(classifier.model(**inputs).logits, -1).numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-6)
    assert not np.allclose(probs[0], probs[1])  # depends on the input


def test_other_weights_give_other_probabilities(vit_dir, tmp_path, astronaut_bgr):
    crop = [astronaut_bgr[60:170, 170:280, ::-1].copy()]
    before = ExpressionClassifier(vit_dir, device="cpu").predict(crop)
    _save_tiny_vit(tmp_path, seed=1)
    other_seed = ExpressionClassifier(tmp_path, device="cpu").predict(crop)
    assert np.abs(before - other_seed).max() > 1e-3
    boosted_dir = tmp_path / "boosted"
    _save_tiny_vit(boosted_dir, seed=0, boost_label=VIT_LABELS.index("Sadness"))
    boosted = ExpressionClassifier(boosted_dir, device="cpu").predict(crop)
    assert VIT_LABELS[int(boosted.argmax())] == "Sadness" and boosted.max() > 0.99


def test_the_service_pipeline_uses_the_vit(vit_dir, astronaut_bgr):
    from vigil_emotion.backend import EmotionBackend

    backend = EmotionBackend("127.0.0.1", 0, settings=EmotionSettings(model_dir=str(vit_dir), device="cpu"))
    backend.initialize_model()
    from .samples import jpeg_b64

    reply = backend.process_inference({"image": jpeg_b64(astronaut_bgr), "session_id": "vit"})
    assert reply["labels"] == VIT_LABELS
    face = reply["faces"][0]
    assert list(face["probabilities"]) == VIT_LABELS
    assert sum(face["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert reply["prediction"] == max(face["probabilities"], key=face["probabilities"].get)
    # The AffectNet spellings map onto the circumplex table, so valence/arousal are reported.
    assert reply["valence"] is not None and -1 <= reply["valence"] <= 1
    assert backend.model_info()["model_type"] == "vit"
    assert isinstance(backend.analyzer, FrameAnalyzer)
