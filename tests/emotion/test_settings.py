"""Emotion settings through the one settings layer: defaults, VIGIL_EMOTION_* env, flags, errors."""

from __future__ import annotations

import os

import pytest

from shared_protocol.settings import load_settings
from vigil_emotion.settings import DEFAULT_MODEL_DIR, EmotionSettings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("VIGIL_"):
            monkeypatch.delenv(name)


def test_defaults():
    s = EmotionSettings()
    assert s.model_dir == DEFAULT_MODEL_DIR and s.device == "auto" and s.max_faces == 5 and s.port == 8768
    assert s.smoothing_alpha == pytest.approx(2 / 11)
    assert (s.max_sessions, s.max_sessions_per_owner, s.session_idle_ttl_s) == (256, 16, 300.0)


def test_env_then_flags(monkeypatch):
    monkeypatch.setenv("VIGIL_EMOTION_MODEL_DIR", "/m")
    monkeypatch.setenv("VIGIL_EMOTION_SMOOTHING_WINDOW", "4")
    monkeypatch.setenv("VIGIL_EMOTION_DEVICE", "cpu")
    s = load_settings(EmotionSettings, [])
    assert (s.model_dir, s.smoothing_window, s.device) == ("/m", 4, "cpu")
    assert load_settings(EmotionSettings, ["--model-dir", "/other"]).model_dir == "/other"


def test_former_names_are_fallbacks(monkeypatch, caplog):
    monkeypatch.setenv("VIGIL_DEVICE", "cuda")
    monkeypatch.setenv("VIGIL_EMOTION_TORCH_THREADS", "2")
    s = load_settings(EmotionSettings, [])
    assert s.device == "cuda" and s.threads == 2
    assert "VIGIL_EMOTION_TORCH_THREADS is deprecated" in caplog.text
    monkeypatch.setenv("VIGIL_EMOTION_DEVICE", "cpu")
    assert load_settings(EmotionSettings, []).device == "cpu"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"VIGIL_EMOTION_MAX_FACES": "0"}, "'max_faces'"),
        ({"VIGIL_EMOTION_DEVICE": "tpu"}, "'device'"),
        ({"VIGIL_EMOTION_SMOOTHING_WINDOW": "x"}, "'smoothing_window'"),
        ({"VIGIL_EMOTION_MAX_SESSIONS_PER_OWNER": "0"}, "'max_sessions_per_owner'"),
        ({"VIGIL_MAX_QUEUE": "abc"}, "'max_queue' (--max-queue / VIGIL_EMOTION_MAX_QUEUE)"),
    ],
)
def test_bad_values_exit_2(env, named, monkeypatch, capsys):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as info:
        load_settings(EmotionSettings, [])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("vigil-emotion: bad setting") and named in err, err
