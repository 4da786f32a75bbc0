"""Settings: defaults, VIGIL_EMOTION_* overrides, VIGIL_DEVICE fallback, validation."""

from __future__ import annotations

import pytest

from vigil_emotion.settings import DEFAULT_MODEL_DIR, EmotionSettings


def test_defaults():
    s = EmotionSettings.from_env({})
    assert s.model_dir == DEFAULT_MODEL_DIR and s.device == "auto" and s.max_faces == 5
    assert s.smoothing_alpha == pytest.approx(2 / 11)
    assert (s.max_sessions, s.max_sessions_per_owner, s.session_idle_ttl_s) == (256, 16, 300.0)


def test_session_limits_from_env():
    s = EmotionSettings.from_env({"VIGIL_EMOTION_MAX_SESSIONS": "8", "VIGIL_EMOTION_MAX_SESSIONS_PER_OWNER": "2"})
    assert (s.max_sessions, s.max_sessions_per_owner) == (8, 2)


def test_env_overrides_and_explicit_overrides():
    env = {"VIGIL_EMOTION_MODEL_DIR": "/m", "VIGIL_EMOTION_SMOOTHING_WINDOW": "4", "VIGIL_EMOTION_DEVICE": "cpu"}
    s = EmotionSettings.from_env(env)
    assert (s.model_dir, s.smoothing_window, s.device) == ("/m", 4, "cpu")
    assert EmotionSettings.from_env(env, model_dir="/other", device=None).model_dir == "/other"


def test_stack_wide_device_is_a_fallback():
    assert EmotionSettings.from_env({"VIGIL_DEVICE": "cuda"}).device == "cuda"
    assert EmotionSettings.from_env({"VIGIL_DEVICE": "cuda", "VIGIL_EMOTION_DEVICE": "cpu"}).device == "cpu"


@pytest.mark.parametrize(
    "env",
    [
        {"VIGIL_EMOTION_MAX_FACES": "0"},
        {"VIGIL_EMOTION_DEVICE": "tpu"},
        {"VIGIL_EMOTION_SMOOTHING_WINDOW": "x"},
        {"VIGIL_EMOTION_MAX_SESSIONS_PER_OWNER": "0"},
    ],
)
def test_bad_values_are_refused(env):
    with pytest.raises(ValueError, match="VIGIL_EMOTION_"):
        EmotionSettings.from_env(env)
