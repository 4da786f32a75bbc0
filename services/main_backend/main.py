"""vigil main backend entry point: python main.py --host 0.0.0.0 --port 8765 --config config/models.yaml"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys

from shared_protocol.cli import configure_logging
from shared_protocol.eventloop import run_event_loop
from vigil_main.config import ConfigError, load_config
from vigil_main.gateway import Gateway

logger = logging.getLogger("vigil_main")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="vigil main backend (client-facing WebSocket gateway)")
    p.add_argument("--config", default=os.environ.get("VIGIL_CONFIG", "config/models.yaml"), help="models.yaml path")
    p.add_argument("--host", default=None, help="address to bind (overrides main_backend.host)")
    p.add_argument("--port", type=int, default=None, help="port to bind (overrides main_backend.port)")
    p.add_argument("--log-level", default=os.environ.get("VIGIL_LOG_LEVEL", "INFO"))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        logger.error("%s", exc)
        print(f"vigil main backend: {exc}", file=sys.stderr)  # visible even with logging misconfigured
        return 2
    if args.host is not None:
        config.main_backend.host = args.host
    if args.port is not None:
        config.main_backend.port = args.port
    gateway = Gateway(config)
    with contextlib.suppress(KeyboardInterrupt):
        run_event_loop(gateway.serve(install_signal_handlers=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
