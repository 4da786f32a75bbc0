"""vigil main backend entry point: python main.py --host 0.0.0.0 --port 8765 --config config/models.yaml

Settings: config/models.yaml (the seed's file; `--config` or VIGIL_CONFIG), then env
VIGIL_GATEWAY_<KEY> / VIGIL_GATEWAY_BACKENDS__<NAME>__<KEY>, then the flags below (one per key of
the `main_backend` section, generated from its model). A bad value exits with code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from shared_protocol.cli import configure_logging
from shared_protocol.eventloop import run_event_loop
from vigil_main_backend.config import ConfigError, MainBackendConfig, load_config
from vigil_main_backend.gateway import MainBackend

PROG = "vigil-main-backend"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description="vigil main backend (client-facing WebSocket gateway)")
    p.add_argument("--config", default=os.environ.get("VIGIL_CONFIG", "config/models.yaml"), help="models.yaml path")
    p.add_argument("--log-level", default=os.environ.get("VIGIL_LOG_LEVEL", "INFO"))
    p.add_argument("--log-format", choices=("text", "json"), default=os.environ.get("VIGIL_LOG_FORMAT", "text"))
    for name, field in MainBackendConfig.model_fields.items():
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None, help=field.description or None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level, args.log_format, service="main_backend")
    flags = {name: getattr(args, name) for name in MainBackendConfig.model_fields if getattr(args, name) is not None}
    try:
        config = load_config(args.config, flags=flags)
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    gateway = MainBackend(config)
    with contextlib.suppress(KeyboardInterrupt):
        run_event_loop(gateway.serve(install_signal_handlers=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
