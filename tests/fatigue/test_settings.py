import pytest

from vigil_fatigue.settings import FatigueSettings


def test_env_overrides_fields():
    s = FatigueSettings.from_env({"VIGIL_FATIGUE_PERCLOS_WINDOW_S": "30", "VIGIL_FATIGUE_MAX_SESSIONS": "8"})
    assert s.perclos_window_s == 30.0 and s.max_sessions == 8
    assert s.blink_max_s == FatigueSettings().blink_max_s


def test_gateway_variables_are_not_fields_and_are_ignored():
    s = FatigueSettings.from_env({"VIGIL_FATIGUE_HOST": "fatigue", "VIGIL_FATIGUE_PORT": "8767"})
    assert s == FatigueSettings()


@pytest.mark.parametrize(
    "env",
    [
        {"VIGIL_FATIGUE_PERCLOS_WINDOW_S": "soon"},
        {"VIGIL_FATIGUE_PERCLOS_WINDOW_S": "-1"},
        {"VIGIL_FATIGUE_PERCLOS_DROWSY": "0.5", "VIGIL_FATIGUE_PERCLOS_VERY_DROWSY": "0.3"},
        {"VIGIL_FATIGUE_BLINK_MAX_S": "2.0"},
    ],
)
def test_bad_settings_are_refused_with_the_name(env):
    with pytest.raises(ValueError, match="VIGIL_FATIGUE_"):
        FatigueSettings.from_env(env)
