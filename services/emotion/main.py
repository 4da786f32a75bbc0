"""Emotion (facial expression) model backend: python main.py --host H --port 8768 [--model-dir DIR]."""

from __future__ import annotations

import os
import sys

# Never reach the Hugging Face hub: models load from a local directory only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from shared_protocol.cli import configure_logging, run_backend
from shared_protocol.settings import load_settings
from vigil_emotion.backend import EmotionBackend
from vigil_emotion.settings import EmotionSettings


def main(argv: list[str] | None = None) -> int:
    settings = load_settings(EmotionSettings, argv)  # exits with code 2 on a bad value
    configure_logging(settings.log_level, settings.log_format, service="emotion")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # weight-loading progress bars are noise in service logs
    backend = EmotionBackend(settings.host, settings.port, settings=settings, **settings.backend_kwargs())
    return run_backend(backend)


if __name__ == "__main__":
    sys.exit(main())
