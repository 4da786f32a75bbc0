"""Parity of the PyTorch port with the original Keras model running in TensorFlow.

The original runs in a subprocess of the TensorFlow reference venv (scripts/setup-tf-reference.sh);
both see the same preprocessed real faces: the astronaut crop and crops, scalings, rotations,
flips and lighting changes of it. Class probabilities must agree within 1e-4.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
TF_VENV_PYTHON = Path(os.environ.get("VIGIL_TF_VENV", REPO / ".venv-tf")) / "bin" / "python"
TF_REFERENCE = Path(__file__).with_name("tf_reference.py")
TOLERANCE = 1e-4

logger = logging.getLogger(__name__)


def _rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(image, matrix, (w, h), borderMode=cv2.BORDER_REFLECT)


def _face_variants(astronaut_bgr: np.ndarray, classifier) -> tuple[list[str], np.ndarray]:
    from vigil_emotion.faces import HaarFaceDetector, crop_faces

    grey = cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2GRAY)
    boxes = HaarFaceDetector().detect(grey)
    assert boxes, "no face found in the astronaut photo"
    face = crop_faces(astronaut_bgr, boxes[:1])[0]
    b = boxes[0]
    variants = {
        "fer crop": face,
        "tight box": astronaut_bgr[b.y : b.y + b.height, b.x : b.x + b.width],
        "loose box": astronaut_bgr[max(0, b.y - 40) : b.y + b.height + 40, max(0, b.x - 40) : b.x + b.width + 40],
        "lower half": face[face.shape[0] // 2 :],
        "rotated +10": _rotate(face, 10),
        "rotated -10": _rotate(face, -10),
        "rotated +25": _rotate(face, 25),
        "rotated 90": cv2.rotate(face, cv2.ROTATE_90_CLOCKWISE),
        "flipped": cv2.flip(face, 1),
        "darker": (face * 0.5).astype(np.uint8),
        "brighter": cv2.convertScaleAbs(face, alpha=1.3, beta=30),
        "blurred": cv2.GaussianBlur(face, (9, 9), 3),
        "jpeg q20": cv2.imdecode(cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_QUALITY, 20])[1], cv2.IMREAD_COLOR),
        "whole photo": astronaut_bgr,
    }
    rgb = [cv2.cvtColor(v, cv2.COLOR_BGR2RGB) for v in variants.values()]
    pixel_values = classifier.processor(rgb, return_tensors="np")["pixel_values"]
    return list(variants), pixel_values.astype(np.float32)


def _tf_probabilities(h5: Path, pixel_values: np.ndarray, tmp_path: Path) -> np.ndarray:
    if not TF_VENV_PYTHON.is_file():
        pytest.fail(
            f"TensorFlow reference venv not found at {TF_VENV_PYTHON.parent.parent}: "
            "run scripts/setup-tf-reference.sh first (CI does)",
            pytrace=False,
        )
    inputs, output = tmp_path / "inputs.npz", tmp_path / "tf_out.npz"
    np.savez(inputs, pixel_values=pixel_values)
    proc = subprocess.run(
        [str(TF_VENV_PYTHON), str(TF_REFERENCE), str(h5), str(inputs), str(output)],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert proc.returncode == 0, f"TensorFlow reference failed:\n{proc.stderr[-4000:]}"
    with np.load(output) as result:
        assert str(result["tensorflow_version"]).startswith("2.")
        return result["probabilities"]


def test_port_matches_tensorflow_original_on_real_faces(classifier, astronaut_bgr, fer_h5_path, tmp_path):
    names, pixel_values = _face_variants(astronaut_bgr, classifier)
    tf_probs = _tf_probabilities(fer_h5_path, pixel_values, tmp_path)

    with torch.inference_mode():
        logits = classifier.model(pixel_values=torch.from_numpy(pixel_values)).logits
    torch_probs = torch.softmax(logits, dim=-1).numpy().astype(np.float64)

    assert tf_probs.shape == torch_probs.shape == (len(names), 7)
    # The inputs really differ for the network (not one image repeated), so agreement means something.
    assert np.ptp(tf_probs[:, 3]) > 0.05, tf_probs
    diff = np.abs(tf_probs - torch_probs)
    worst = int(diff.max(axis=1).argmax())
    happy = {name: round(float(p), 4) for name, p in zip(names, tf_probs[:, 3], strict=True)}
    logger.info("max |TF - torch| = %.2e; P(happy) per variant: %s", diff.max(), happy)
    assert diff.max() < TOLERANCE, f"max |TF - torch| = {diff.max():.2e} on '{names[worst]}'"
    assert (tf_probs.argmax(axis=1) == torch_probs.argmax(axis=1)).all()
    # The original itself says "happy" on the unmodified face crop.
    assert tf_probs[0].argmax() == 3 and tf_probs[0, 3] > 0.9, tf_probs[0]
