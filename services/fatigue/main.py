"""Entry point: python main.py --host H --port P (port 8767)."""

from __future__ import annotations

import sys

from shared_protocol.cli import build_arg_parser, common_backend_kwargs, configure_logging, run_backend
from vigil_fatigue.backend import FatigueBackend
from vigil_fatigue.settings import FatigueSettings


def main() -> int:
    parser = build_arg_parser("vigil fatigue backend (MediaPipe Face Mesh)", default_port=8767)
    args = parser.parse_args()
    configure_logging(args.log_level)
    settings = FatigueSettings.from_env()  # VIGIL_FATIGUE_* overrides, see vigil_fatigue/settings.py
    backend = FatigueBackend(args.host, args.port, settings=settings, **common_backend_kwargs(args))
    return run_backend(backend)


if __name__ == "__main__":
    sys.exit(main())
