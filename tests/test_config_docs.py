"""docs/configuration.md is generated from the settings models: it must match them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_configuration_table_is_not_stale():
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen-config-docs.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"{proc.stderr}\nrun: .venv/bin/python scripts/gen-config-docs.py"


def test_every_service_setting_is_in_the_table():
    sys.path.insert(0, str(REPO / "services" / "eeg"))
    from vigil_eeg.settings import EEGSettings

    text = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    for name in EEGSettings.model_fields:
        assert f"`VIGIL_EEG_{name.upper()}`" in text, name
