"""Entry point: python main.py --host H --port 8769 [--config eeg.yaml] [--<setting> VALUE ...]"""

from __future__ import annotations

import sys

from shared_protocol.cli import configure_logging, run_backend
from shared_protocol.settings import load_settings
from vigil_eeg.backend import EEGBackend
from vigil_eeg.settings import EEGSettings


def main(argv: list[str] | None = None) -> int:
    settings = load_settings(EEGSettings, argv)  # exits with code 2 on a bad value
    configure_logging(settings.log_level, settings.log_format, service="eeg")
    backend = EEGBackend(settings.host, settings.port, settings=settings, **settings.backend_kwargs())
    return run_backend(backend)


if __name__ == "__main__":
    sys.exit(main())
