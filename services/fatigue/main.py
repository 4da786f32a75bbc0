"""Entry point: python main.py --host H --port P (port 8767) [--config fatigue.yaml] [--<setting> VALUE ...]"""

from __future__ import annotations

import sys

from shared_protocol.cli import configure_logging, run_backend
from shared_protocol.settings import load_settings
from vigil_fatigue.backend import FatigueBackend
from vigil_fatigue.settings import FatigueSettings


def main(argv: list[str] | None = None) -> int:
    settings = load_settings(FatigueSettings, argv)  # exits with code 2 on a bad value
    configure_logging(settings.log_level, settings.log_format, service="fatigue")
    backend = FatigueBackend(settings.host, settings.port, settings=settings, **settings.backend_kwargs())
    return run_backend(backend)


if __name__ == "__main__":
    sys.exit(main())
