from __future__ import annotations

import pytest

from vigil_eeg.settings import EEGSettings, load_settings


def test_defaults_match_the_issue():
    s = EEGSettings()
    assert (s.window_s, s.line_freq, s.l_freq, s.h_freq, s.amplitude_uv) == (4.0, 50.0, 1.0, 40.0, 150.0)
    assert s.model_path is None
    assert (s.max_sessions, s.max_sessions_per_owner, s.session_ttl_s) == (64, 16, 600.0)


def test_session_limits_from_env():
    s = load_settings(None, environ={"VIGIL_EEG_MAX_SESSIONS": "8", "VIGIL_EEG_MAX_SESSIONS_PER_OWNER": "2"})
    assert (s.max_sessions, s.max_sessions_per_owner) == (8, 2)


def test_yaml_then_env_overrides(tmp_path):
    config = tmp_path / "eeg.yaml"
    config.write_text("line_freq: 60\nwindow_s: 2.0\nmin_window_s: 1.0\naverage_reference: true\n")
    s = load_settings(str(config), environ={"VIGIL_EEG_WINDOW_S": "3", "VIGIL_EEG_ON_STREAM_CHANGE": "reset"})
    assert s.line_freq == 60.0 and s.average_reference is True
    assert s.window_s == 3.0 and s.on_stream_change == "reset"
    assert load_settings(None, environ={"VIGIL_EEG_CONFIG": str(config)}).line_freq == 60.0
    assert load_settings(None, environ={"VIGIL_EEG_MODEL_PATH": ""}).model_path is None


@pytest.mark.parametrize(
    "environ",
    [
        {"VIGIL_EEG_LINE_FREQ": "55"},
        {"VIGIL_EEG_L_FREQ": "45"},
        {"VIGIL_EEG_MIN_WINDOW_S": "10"},
        {"VIGIL_EEG_WINDOW_S": "abc"},
        {"VIGIL_EEG_ON_STREAM_CHANGE": "ignore"},
        {"VIGIL_EEG_VERY_DROWSY_Z": "0.5"},
        {"VIGIL_EEG_MAX_SESSIONS_PER_OWNER": "0"},
        {"VIGIL_EEG_NOT_A_FIELD": "1"},  # unknown env names are ignored, so this one is valid...
    ],
)
def test_invalid_values_are_refused(environ):
    if "VIGIL_EEG_NOT_A_FIELD" in environ:
        assert load_settings(None, environ=environ) == EEGSettings()
        return
    with pytest.raises(ValueError, match="invalid EEG settings"):
        load_settings(None, environ=environ)


def test_yaml_must_be_a_mapping(tmp_path):
    config = tmp_path / "eeg.yaml"
    config.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        load_settings(str(config), environ={})
    config.write_text("unknown_key: 1\n")
    with pytest.raises(ValueError, match="invalid EEG settings"):
        load_settings(str(config), environ={})
