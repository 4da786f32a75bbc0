"""Fatigue settings through the one settings layer."""

import os

import pytest

from shared_protocol.settings import load_settings
from vigil_fatigue.settings import FatigueSettings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("VIGIL_"):
            monkeypatch.delenv(name)


def test_env_and_flags_override_fields(monkeypatch):
    monkeypatch.setenv("VIGIL_FATIGUE_PERCLOS_WINDOW_S", "30")
    monkeypatch.setenv("VIGIL_FATIGUE_MAX_SESSIONS", "8")
    s = load_settings(FatigueSettings, ["--max-batch-size", "4"])
    assert s.perclos_window_s == 30.0 and s.max_sessions == 8 and s.max_batch_size == 4
    assert s.blink_max_s == FatigueSettings().blink_max_s and s.port == 8767


def test_former_device_name_is_a_fallback(monkeypatch, caplog):
    monkeypatch.setenv("VIGIL_FATIGUE_TORCH_DEVICE", "cpu")
    assert load_settings(FatigueSettings, []).device == "cpu"
    assert "VIGIL_FATIGUE_TORCH_DEVICE is deprecated" in caplog.text


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"VIGIL_FATIGUE_PERCLOS_WINDOW_S": "soon"}, "'perclos_window_s'"),
        ({"VIGIL_FATIGUE_PERCLOS_WINDOW_S": "-1"}, "'perclos_window_s'"),
        ({"VIGIL_FATIGUE_PERCLOS_DROWSY": "0.5", "VIGIL_FATIGUE_PERCLOS_VERY_DROWSY": "0.3"}, "perclos_drowsy"),
        ({"VIGIL_FATIGUE_BLINK_MAX_S": "2.0"}, "blink_max_s"),
        ({"VIGIL_FATIGUE_DEVICE": "tpu"}, "'device'"),
    ],
)
def test_bad_settings_exit_2_with_the_name(env, named, monkeypatch, capsys):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as info:
        load_settings(FatigueSettings, [])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("vigil-fatigue: bad setting") and named in err, err
