"""config/models.yaml loading: seed keys, env overrides, clear errors and exit code 2."""

import subprocess
import sys

import pytest

from support.net import REPO
from vigil_main_backend.config import ConfigError, load_config


def test_repo_config_loads_with_seed_keys():
    config = load_config(REPO / "config" / "models.yaml", env={})
    assert set(config.model_backends) == {"fatigue", "emotion", "eeg"}
    eeg = config.model_backends["eeg"]
    assert (
        eeg.host,
        eeg.port,
        eeg.enabled,
        eeg.reconnect_interval,
        eeg.max_reconnect_attempts,
        eeg.request_timeout,
    ) == (
        "localhost",
        8769,
        True,
        5,
        10,
        30,
    )
    assert config.inputs_of("fatigue") == ["image"] and config.inputs_of("eeg") == ["eeg"]


def test_seed_style_block_without_vigil_keys(tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text(
        "model_backends:\n  your_backend:\n    host: localhost\n    port: 8770\n    enabled: false\n"
        "    reconnect_interval: 5\n    max_reconnect_attempts: 10\n    request_timeout: 30\n"
    )
    config = load_config(path, env={})
    assert config.model_backends["your_backend"].enabled is False
    assert config.main_backend.port == 8765


def test_the_gateways_own_namespace_wins_over_the_former_names(caplog):
    env = {
        "VIGIL_GATEWAY_BACKENDS__EEG__HOST": "eeg-new",
        "VIGIL_EEG_HOST": "eeg-old",
        "VIGIL_GATEWAY_BACKENDS__FATIGUE__ENDPOINTS": "f1:8767,f2:8767",
        "VIGIL_GATEWAY_HEALTH_INTERVAL": "3",
        "VIGIL_MAIN_PORT": "18765",
    }
    config = load_config(REPO / "config" / "models.yaml", env=env, flags={"port": "19000"})
    assert config.model_backends["eeg"].host == "eeg-new"
    assert config.model_backends["fatigue"].endpoints == ["f1:8767", "f2:8767"]
    assert config.main_backend.health_interval == 3 and config.main_backend.port == 19000  # flags win
    assert "VIGIL_EEG_HOST is deprecated" in caplog.text and "VIGIL_GATEWAY_BACKENDS__EEG__HOST" in caplog.text
    assert "VIGIL_MAIN_PORT is deprecated" in caplog.text


def test_env_overrides_every_key(tmp_path):
    env = {
        "VIGIL_FATIGUE_HOST": "fatigue",
        "VIGIL_FATIGUE_PORT": "9999",
        "VIGIL_EEG_ENABLED": "false",
        "VIGIL_EMOTION_REQUEST_TIMEOUT": "2.5",
        "VIGIL_EMOTION_REQUIRED": "true",
        "VIGIL_FATIGUE_RECONNECT_INTERVAL": "1",
        "VIGIL_FATIGUE_MAX_RECONNECT_ATTEMPTS": "3",
        "VIGIL_MAIN_PORT": "18765",
        "VIGIL_LOG_LEVEL": "DEBUG",  # not a config key: ignored
    }
    config = load_config(REPO / "config" / "models.yaml", env=env)
    fatigue = config.model_backends["fatigue"]
    assert (fatigue.host, fatigue.port, fatigue.reconnect_interval, fatigue.max_reconnect_attempts) == (
        "fatigue",
        9999,
        1,
        3,
    )
    assert config.model_backends["eeg"].enabled is False
    assert config.model_backends["emotion"].request_timeout == 2.5 and config.model_backends["emotion"].required
    assert config.main_backend.port == 18765


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("model_backends:\n  eeg:\n    port: 'abc'\n", {}, "model_backends.eeg.port"),
        (
            "model_backends:\n  eeg:\n    host: x\n",
            {},
            r"model_backends.eeg.port \(VIGIL_GATEWAY_BACKENDS__EEG__PORT\): Field required",
        ),
        ("model_backends:\n  eeg:\n    port: 70000\n", {}, "less than or equal to 65535"),
        ("model_backends:\n  eeg:\n    port: 1\n    request_timeout: 0\n", {}, "request_timeout"),
        ("model_backends:\n  eeg:\n    port: 1\n    reconect_interval: 5\n", {}, "reconect_interval.*Extra inputs"),
        ("model_backends:\n  Bad-Name:\n    port: 1\n", {}, "lower-case"),
        ("- a list\n", {}, "mapping at the top level"),
        ("model_backends: {eeg: [\n", {}, "not valid YAML"),
        ("model_backends:\n  eeg:\n    port: 1\n", {"VIGIL_EEG_PORT": "x"}, "model_backends.eeg.port"),
    ],
)
def test_invalid_config_is_explained(tmp_path, text, env, expected):
    path = tmp_path / "models.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected):
        load_config(path, env=env)


def test_missing_file_is_explained(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml", env={})


def test_main_exits_2_on_bad_config(tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text("model_backends:\n  eeg:\n    port: nope\n")
    result = subprocess.run(
        [sys.executable, "main.py", "--config", str(path), "--port", "0"],
        cwd=REPO / "services" / "main_backend",
        capture_output=True,
        text=True,
        timeout=30,
        env={"PYTHONPATH": str(REPO / "shared_protocol" / "src"), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert "model_backends.eeg.port" in result.stderr
