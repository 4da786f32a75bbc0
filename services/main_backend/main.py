"""vigil main backend entry point: python main.py --host 0.0.0.0 --port 8765 --config config/models.yaml

Settings: config/models.yaml (the seed's file; `--config` or VIGIL_CONFIG), then env
VIGIL_GATEWAY_<KEY> / VIGIL_GATEWAY_BACKENDS__<NAME>__<KEY>, then the flags below (one per key of
the `main_backend` section, generated from its model). A bad value exits with code 2.

`workers` > 1 (`--workers N`, VIGIL_GATEWAY_WORKERS): this process validates the configuration and
supervises N worker processes sharing the port (vigil_main_backend/workers.py), each this script
run again with VIGIL_GATEWAY_WORKER_INDEX set.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from shared_protocol.cli import configure_logging
from shared_protocol.eventloop import run_event_loop
from vigil_main_backend.config import ConfigError, MainBackendConfig, load_config
from vigil_main_backend.gateway import MainBackend
from vigil_main_backend.workers import (
    READY_FD_ENV,
    Supervisor,
    per_worker_config,
    serve_worker,
    tag_worker_logs,
    worker_index,
)

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
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    configure_logging(args.log_level, args.log_format, service="main_backend")
    flags = {name: getattr(args, name) for name in MainBackendConfig.model_fields if getattr(args, name) is not None}
    try:
        config = load_config(args.config, flags=flags)
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    if config.main_backend.workers == 1:  # one process, as always
        gateway = MainBackend(config)
        with contextlib.suppress(KeyboardInterrupt):
            run_event_loop(gateway.serve(install_signal_handlers=True))
        return 0
    index = worker_index()
    if index is None:
        return Supervisor(config, Path(__file__), argv).run()
    tag_worker_logs(index)
    gateway = MainBackend(per_worker_config(config), worker=index)
    ready_fd = os.environ.get(READY_FD_ENV)
    with contextlib.suppress(KeyboardInterrupt):
        run_event_loop(serve_worker(gateway, int(ready_fd) if ready_fd and ready_fd.isdigit() else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
