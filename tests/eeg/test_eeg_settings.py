"""EEG settings through the one settings layer: defaults, YAML, env, flags, one error format."""

from __future__ import annotations

import pytest

from shared_protocol.settings import load_settings
from vigil_eeg.settings import EEGSettings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("VIGIL_"):
            monkeypatch.delenv(name)


def test_defaults_match_the_issue():
    s = EEGSettings()
    assert (s.window_s, s.line_freq, s.l_freq, s.h_freq, s.amplitude_uv) == (4.0, 50.0, 1.0, 40.0, 150.0)
    assert s.model_path is None and s.port == 8769
    assert (s.max_sessions, s.max_sessions_per_owner, s.session_ttl_s) == (64, 16, 600.0)


def test_session_limits_from_env(monkeypatch):
    monkeypatch.setenv("VIGIL_EEG_MAX_SESSIONS", "8")
    monkeypatch.setenv("VIGIL_EEG_MAX_SESSIONS_PER_OWNER", "2")
    s = load_settings(EEGSettings, [])
    assert (s.max_sessions, s.max_sessions_per_owner) == (8, 2)


def test_yaml_then_env_then_flags(tmp_path, monkeypatch):
    config = tmp_path / "eeg.yaml"
    config.write_text("line_freq: 60\nwindow_s: 2.0\nmin_window_s: 1.0\naverage_reference: true\nmax_queue: 5\n")
    monkeypatch.setenv("VIGIL_EEG_WINDOW_S", "3")
    monkeypatch.setenv("VIGIL_EEG_ON_STREAM_CHANGE", "reset")
    s = load_settings(EEGSettings, ["--config", str(config), "--max-queue", "7"])
    assert s.line_freq == 60.0 and s.average_reference is True
    assert s.window_s == 3.0 and s.on_stream_change == "reset" and s.max_queue == 7
    monkeypatch.setenv("VIGIL_EEG_CONFIG", str(config))
    assert load_settings(EEGSettings, []).line_freq == 60.0
    monkeypatch.setenv("VIGIL_EEG_MODEL_PATH", "")
    assert load_settings(EEGSettings, []).model_path is None


def test_deprecated_common_names_still_work_with_a_warning(monkeypatch, caplog):
    monkeypatch.setenv("VIGIL_MAX_QUEUE", "9")
    monkeypatch.setenv("VIGIL_LOG_LEVEL", "DEBUG")
    s = load_settings(EEGSettings, [])
    assert s.max_queue == 9 and s.log_level == "DEBUG"
    assert "VIGIL_MAX_QUEUE is deprecated" in caplog.text and "VIGIL_EEG_MAX_QUEUE" in caplog.text
    monkeypatch.setenv("VIGIL_EEG_MAX_QUEUE", "3")  # the new name wins
    assert load_settings(EEGSettings, []).max_queue == 3


@pytest.mark.parametrize(
    ("environ", "argv", "named"),
    [
        ({"VIGIL_EEG_LINE_FREQ": "55"}, [], "line_freq must be 50 or 60"),
        ({"VIGIL_EEG_L_FREQ": "45"}, [], "l_freq must be below h_freq"),
        ({"VIGIL_EEG_MIN_WINDOW_S": "10"}, [], "min_window_s"),
        ({"VIGIL_EEG_WINDOW_S": "abc"}, [], "'window_s' (--window-s / VIGIL_EEG_WINDOW_S)"),
        ({"VIGIL_EEG_ON_STREAM_CHANGE": "ignore"}, [], "'on_stream_change'"),
        ({"VIGIL_EEG_VERY_DROWSY_Z": "0.5"}, [], "very_drowsy_z must exceed drowsy_z"),
        ({"VIGIL_EEG_MAX_SESSIONS_PER_OWNER": "0"}, [], "'max_sessions_per_owner'"),
        ({"VIGIL_MAX_QUEUE": "abc"}, [], "'max_queue' (--max-queue / VIGIL_EEG_MAX_QUEUE)"),
        ({}, ["--max-queue", "-1"], "'max_queue'"),
        ({}, ["--port", "x"], "'port'"),
    ],
)
def test_invalid_values_exit_2_with_one_message(environ, argv, named, monkeypatch, capsys):
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as info:
        load_settings(EEGSettings, argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("vigil-eeg: bad setting") and named in err, err
    assert "Traceback" not in err


def test_unknown_flag_and_bad_yaml_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        load_settings(EEGSettings, ["--no-such-flag", "1"])
    assert info.value.code == 2
    config = tmp_path / "eeg.yaml"
    config.write_text("- 1\n- 2\n")
    with pytest.raises(SystemExit) as info:
        load_settings(EEGSettings, ["--config", str(config)])
    assert info.value.code == 2 and "mapping" in capsys.readouterr().err
    config.write_text("unknown_key: 1\n")
    with pytest.raises(SystemExit) as info:
        load_settings(EEGSettings, ["--config", str(config)])
    assert info.value.code == 2 and "unknown_key" in capsys.readouterr().err
