"""A bad `model_dir` is reported (unhealthy, with the reason), never a crash or a silent fallback."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import BertConfig

from support.net import connect_ws, rpc, serving, wait_ready
from vigil_emotion.backend import EmotionBackend
from vigil_emotion.classifier import ExpressionClassifier, ModelLoadError
from vigil_emotion.settings import EmotionSettings

REPO = Path(__file__).resolve().parents[2]
MAIN = REPO / "services" / "emotion" / "main.py"


def test_missing_directory(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        ExpressionClassifier(tmp_path / "nope", device="cpu")


def test_directory_without_config(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json"):
        ExpressionClassifier(tmp_path, device="cpu")


def test_not_an_image_classification_model(tmp_path):
    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64).save_pretrained(
        tmp_path
    )
    with pytest.raises(ModelLoadError, match="not an image-classification model"):
        ExpressionClassifier(tmp_path, device="cpu")


def test_config_without_weights(tmp_path, mini_xception_dir):
    for name in ("config.json", "preprocessor_config.json"):
        (tmp_path / name).write_text((mini_xception_dir / name).read_text())
    with pytest.raises(ModelLoadError, match="weights"):
        ExpressionClassifier(tmp_path, device="cpu")


def test_config_without_processor(tmp_path, mini_xception_dir):
    for name in ("config.json", "model.safetensors"):
        (tmp_path / name).write_bytes((mini_xception_dir / name).read_bytes())
    with pytest.raises(ModelLoadError, match="image processor"):
        ExpressionClassifier(tmp_path, device="cpu")


def test_garbage_config(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="config.json"):
        ExpressionClassifier(tmp_path, device="cpu")


def test_cuda_device_is_used_or_refused_clearly(mini_xception_dir, astronaut_bgr):
    import torch

    crop = [astronaut_bgr[50:180, 160:290, ::-1].copy()]
    if torch.cuda.is_available():  # GPU hosts: same probabilities as on the CPU
        on_gpu = ExpressionClassifier(mini_xception_dir, device="cuda")
        assert on_gpu.device.type == "cuda"
        on_cpu = ExpressionClassifier(mini_xception_dir, device="cpu")
        assert abs(on_gpu.predict(crop) - on_cpu.predict(crop)).max() < 1e-4
    else:
        with pytest.raises(ModelLoadError, match="CUDA is not available"):
            ExpressionClassifier(mini_xception_dir, device="cuda")
        assert ExpressionClassifier(mini_xception_dir, device="auto").device.type == "cpu"


def test_backend_reports_unhealthy_with_the_reason(tmp_path):
    async def scenario():
        settings = EmotionSettings(model_dir=str(tmp_path / "missing"), device="cpu")
        backend = EmotionBackend("127.0.0.1", 0, settings=settings)
        async with serving(backend) as url:
            await wait_ready(backend)
            async with await connect_ws(url) as ws:
                pong = await rpc(ws, {"type": "health_check", "request_id": "h"})
                assert pong["status"] == "unhealthy"
                assert "does not exist" in pong["error"] and "missing" in pong["error"]
                reply = await rpc(ws, {"type": "inference_request", "request_id": "r", "data": {"image": "x"}})
                assert reply["type"] == "error" and reply["code"] == "unavailable"
                assert "does not exist" in reply["error"]

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_strict_mode_exits_non_zero(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    env = {**os.environ, "VIGIL_EMOTION_MODEL_DIR": str(tmp_path), "VIGIL_STRICT": "true"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "shared_protocol" / "src"), str(MAIN.parent)])
    proc = subprocess.run(
        [sys.executable, str(MAIN), "--host", "127.0.0.1", "--port", "0"],
        cwd=MAIN.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "not an image-classification model" in proc.stderr


def test_gateway_variables_do_not_reach_the_emotion_service(tmp_path):
    """The main backend's view of emotion lives in its own namespace (VIGIL_GATEWAY_BACKENDS__...);
    the service's own VIGIL_EMOTION_* names are its settings, and flags override them."""
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    env = {
        **os.environ,
        "VIGIL_EMOTION_MODEL_DIR": str(tmp_path),
        "VIGIL_EMOTION_EXIT_ON_INIT_FAILURE": "true",
        "VIGIL_GATEWAY_BACKENDS__EMOTION__HOST": "emotion.invalid",
        "VIGIL_GATEWAY_BACKENDS__EMOTION__PORT": "1",
        "VIGIL_EMOTION_HOST": "127.0.0.1",
    }
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "shared_protocol" / "src"), str(MAIN.parent)])
    proc = subprocess.run(
        [sys.executable, str(MAIN), "--port", "0"],
        cwd=MAIN.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]  # reached model loading: bound where it should
    assert "listening on ws://127.0.0.1:" in proc.stderr
