"""A test-only model backend whose behaviour each request controls (never shipped in services/).

data.op:
  "echo"   -> returns {"echo": data}
  "sleep"  -> sleeps data.ms milliseconds, then echoes
  "raise"  -> raises RuntimeError(data.message)
  "bad"    -> raises BadRequestError(data.message)
  "crash"  -> kills the whole process at once (os._exit), mid-request
  "nan"    -> returns a float NaN (not JSON-serialisable)
Run alone: python tests/support/controlled_backend.py --port 9000 [--init-delay 0.5] [--init-fail]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make shared_protocol importable from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared_protocol" / "src"))

from shared_protocol import BadRequestError, BaseModelBackend
from shared_protocol.cli import build_arg_parser, common_backend_kwargs, configure_logging, run_backend


class ControlledBackend(BaseModelBackend):
    model_name = "controlled-test-backend"
    model_version = "test"

    def __init__(self, host="127.0.0.1", port=0, *, init_delay=0.0, init_fail=False, **kwargs):
        super().__init__(host, port, **kwargs)
        self.init_delay = init_delay
        self.init_fail = init_fail
        self.cleaned_up = False
        self.calls = 0

    def initialize_model(self) -> None:
        time.sleep(self.init_delay)
        if self.init_fail:
            raise RuntimeError("weights file not found (test)")

    def process_inference(self, data):
        self.calls += 1
        op = data.get("op", "echo")
        if op == "sleep":
            time.sleep(float(data.get("ms", 0)) / 1000)
        elif op == "raise":
            raise RuntimeError(data.get("message", "boom"))
        elif op == "bad":
            raise BadRequestError(data.get("message", "bad input"))
        elif op == "crash":
            os._exit(3)
        elif op == "nan":
            return {"value": float("nan")}
        elif op != "echo":
            raise BadRequestError(f"field 'op' must be one of echo, sleep, raise, bad, crash, nan; got {op!r}")
        return {"echo": data, "pid": os.getpid()}

    def cleanup(self) -> None:
        self.cleaned_up = True


def main() -> int:
    parser = build_arg_parser("controlled test backend", default_port=9000)
    parser.add_argument("--init-delay", type=float, default=0.0)
    parser.add_argument("--init-fail", action="store_true")
    parser.add_argument("--inline", action="store_true", help="run_inline: answer on the event loop (echo only)")
    args = parser.parse_args()
    configure_logging(args.log_level)
    backend = ControlledBackend(
        args.host, args.port, init_delay=args.init_delay, init_fail=args.init_fail, **common_backend_kwargs(args)
    )
    backend.run_inline = args.inline
    return run_backend(backend)


if __name__ == "__main__":
    sys.exit(main())
