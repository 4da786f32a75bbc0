"""Emotion (facial expression) model backend: python main.py --host H --port 8768 [--model-dir DIR]."""

from __future__ import annotations

import logging
import os
import sys

# Never reach the Hugging Face hub: models load from a local directory only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from shared_protocol.cli import build_arg_parser, common_backend_kwargs, configure_logging, run_backend
from vigil_emotion.backend import EmotionBackend
from vigil_emotion.settings import ENV_PREFIX, EmotionSettings

DEFAULT_PORT = 8768


def main(argv: list[str] | None = None) -> int:
    parser = build_arg_parser("vigil emotion backend (facial expression)", DEFAULT_PORT)
    parser.add_argument("--model-dir", help=f"save_pretrained directory (default: ${ENV_PREFIX}MODEL_DIR or built-in)")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # weight-loading progress bars are noise in service logs
    try:
        settings = EmotionSettings.from_env(model_dir=args.model_dir, device=args.device)
    except ValueError as exc:
        logging.getLogger("emotion").error("%s", exc)
        return 2
    backend = EmotionBackend(args.host, args.port, settings=settings, **common_backend_kwargs(args))
    return run_backend(backend)


if __name__ == "__main__":
    sys.exit(main())
