"""Entry point: python main.py --host H --port 8769 [--config eeg.yaml]."""

from __future__ import annotations

import argparse
import logging
import sys

from shared_protocol.cli import build_arg_parser, common_backend_kwargs, configure_logging, run_backend
from vigil_eeg.backend import EEGBackend
from vigil_eeg.settings import CONFIG_ENV, load_settings

DEFAULT_PORT = 8769


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_arg_parser("vigil EEG backend (MNE band powers -> drowsiness)", default_port=DEFAULT_PORT)
    parser.add_argument(
        "--config",
        default=None,
        help=f"YAML file with EEG settings (default: ${CONFIG_ENV}); VIGIL_EEG_<FIELD> env vars override it",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level)
    try:
        settings = load_settings(args.config)
    except (OSError, ValueError) as exc:
        logging.getLogger("vigil_eeg").error("cannot load settings: %s", exc)
        return 2
    backend = EEGBackend(args.host, args.port, settings=settings, **common_backend_kwargs(args))
    return run_backend(backend)


if __name__ == "__main__":
    sys.exit(main())
