"""Build-time converter: MediaPipe 0.10.21 .tflite models -> safetensors for the torch runtime.

    python -m shared_vision.convert --out DIR [--wheel mediapipe-0.10.21-*.whl | --root DIR] [--models NAME ...]

Needs only tflite, flatbuffers, numpy and safetensors: not torch, not mediapipe. Without
--wheel/--root the installed mediapipe package is read.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .sources import MODELS, read_model
from .tflite_convert import ConversionError, convert_tflite_bytes, save_converted

logger = logging.getLogger("convert_tflite")


def main(argv: list[str] | None = None, *, default_models: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="directory for the .safetensors files")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--wheel", type=Path, help="a mediapipe==0.10.21 wheel to read the models from")
    source.add_argument("--root", type=Path, help="a directory containing mediapipe/modules/...")
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=default_models or sorted(MODELS))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for name in args.models:
        try:
            graph = convert_tflite_bytes(read_model(name, wheel=args.wheel, root=args.root), f"{name}.tflite")
        except (FileNotFoundError, ConversionError) as exc:
            logger.error("%s: %s", name, exc)
            return 1
        target = args.out / f"{name}.safetensors"
        save_converted(graph, target)
        logger.info("%s: %d ops, %d weight tensors -> %s", name, len(graph.ops), len(graph.weights), target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
