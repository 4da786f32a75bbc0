"""Build-time converter: MediaPipe 0.10.21 .tflite models -> safetensors for TorchLandmarkEngine.

    python convert_tflite.py --out /opt/vigil/face_mesh_torch [--wheel mediapipe-0.10.21-*.whl | --root DIR]

The converter itself is shared_vision.convert (shared with the emotion image's face detector);
this entry point keeps the fatigue image's command. Needs only shared_vision's converter deps
(requirements-convert.txt: tflite flatbuffer reader, safetensors, numpy): not torch, not mediapipe.
"""

from __future__ import annotations

import sys

from shared_vision.convert import main

if __name__ == "__main__":
    sys.exit(main())
