"""scripts/lock-requirements.py as a module (its name has a hyphen), for the lock tests."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_lock_module():
    spec = importlib.util.spec_from_file_location("lock_requirements", ROOT / "scripts" / "lock-requirements.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def normalize(name: str) -> str:
    """A package name as pip compares it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()
