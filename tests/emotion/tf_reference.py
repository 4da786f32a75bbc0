"""Runs in the TensorFlow reference venv (.venv-tf), not in the service venv.

Loads fer's original Keras h5 with Keras/TensorFlow and writes its class probabilities for the
given preprocessed inputs:  python tf_reference.py H5 INPUTS.npz OUTPUT.npz
INPUTS.npz holds `pixel_values` (N, 1, H, W) float32, as the PyTorch port takes them.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf


def main(h5_path: str, inputs_path: str, output_path: str) -> int:
    model = keras.models.load_model(h5_path, compile=False)
    pixel_values = np.load(inputs_path)["pixel_values"].astype(np.float32)
    nhwc = pixel_values.transpose(0, 2, 3, 1)  # Keras is channels-last
    probabilities = model.predict(nhwc, batch_size=len(nhwc), verbose=0)
    np.savez(
        output_path,
        probabilities=probabilities.astype(np.float64),
        tensorflow_version=tf.__version__,
        keras_version=keras.__version__,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
