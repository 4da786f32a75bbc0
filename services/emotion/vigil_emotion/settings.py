"""Emotion service settings: the common service settings plus model location, input limits, face
detection and smoothing.

Sources, lowest priority first (shared_protocol.settings): defaults, a YAML file (`--config` or
`VIGIL_EMOTION_CONFIG`), `VIGIL_EMOTION_<FIELD>` env vars (e.g. `VIGIL_EMOTION_MODEL_DIR=/models/vit`),
flags `--<field-name>`. Any bad value exits with code 2 naming the setting.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from shared_protocol.settings import ServiceSettings, service_config

ENV_PREFIX = "VIGIL_EMOTION_"
DEFAULT_PORT = 8768
DEFAULT_MODEL_DIR = "/models/mini_xception"  # where the image's builder stage puts the converted model
# Where the image's builder stage puts MediaPipe's converted short-range face detector.
DEFAULT_BLAZEFACE_WEIGHTS = "/models/face_detection/face_detection_short_range.safetensors"


class EmotionSettings(ServiceSettings):
    model_config = service_config("EMOTION")
    legacy_env: ClassVar[dict[str, str]] = {
        **ServiceSettings.legacy_env,
        "VIGIL_EMOTION_TORCH_THREADS": "threads",
    }

    port: int = Field(DEFAULT_PORT, ge=0, le=65535, description="port to bind")

    # ---- model -------------------------------------------------------------------------------
    model_dir: str = Field(
        DEFAULT_MODEL_DIR,
        description="a save_pretrained directory (config.json with id2label, weights, preprocessor_config.json); "
        "any AutoModelForImageClassification checkpoint works",
    )
    device: str = Field(
        "auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto (cuda:0 when available), cpu, cuda, cuda:N"
    )

    # ---- input limits ------------------------------------------------------------------------
    max_image_bytes: int = Field(8 * 1024 * 1024, gt=0)  # decoded JPEG/PNG bytes
    max_image_side: int = Field(4096, gt=0)  # pixels; larger frames are refused, not resized
    # (session_id, timestamp and reset_session follow the one rule of shared_protocol.fields.)

    # ---- face detection ----------------------------------------------------------------------
    detector: Literal["blazeface", "haar"] = Field(
        "blazeface",
        description="blazeface: MediaPipe's short-range BlazeFace on torch (one pass per batch, finds tilted and "
        "turned faces); haar: OpenCV's frontal-face cascade (fer's detector, slower)",
    )
    max_faces: int = Field(5, ge=1)  # faces classified per frame, largest first
    min_face_size: int = Field(50, ge=8)  # pixels (side of the crop square before the offsets)
    blazeface_weights: str = Field(
        DEFAULT_BLAZEFACE_WEIGHTS,
        description="converted face_detection_short_range (python -m shared_vision.convert), file or its directory",
    )
    blazeface_min_score: float = Field(0.5, gt=0, lt=1)  # MediaPipe's default min_detection_confidence
    # Haar only (defaults are the `fer` package's).
    detector_scale_factor: float = Field(1.1, gt=1.0)
    detector_min_neighbors: int = Field(5, ge=0)
    # Minimum Haar level weight of a kept box. Measured on real photos: frontal faces 3.8-6.9
    # (the astronaut at 256-800 px), false positives 1.2-1.3 (shuttle and suit details); 2.0
    # sits between. 0 keeps every box (fer's behaviour).
    detector_min_score: float = Field(2.0, ge=0)
    face_offset_x: int = Field(10, ge=0)  # margin added around the squared box before cropping
    face_offset_y: int = Field(10, ge=0)

    # ---- per-session smoothing of the primary face -------------------------------------------
    # EMA over frames with alpha = 2 / (window + 1): the usual "N-period" EMA, whose centre of
    # mass lies (N - 1) / 2 frames back, i.e. about a simple moving average of N frames.
    smoothing_window: int = Field(10, ge=1)
    # A larger jump in `timestamp` (or one backwards) starts the average afresh: old frames no
    # longer describe the face in front of the camera.
    smoothing_max_gap_s: float = Field(5.0, gt=0)
    # Sessions belong to the client connection that made them (shared_protocol.sessions): a full
    # store refuses new sessions with `overloaded` instead of evicting another client's, and a
    # client beyond its own quota loses its own least recently used session.
    max_sessions: int = Field(256, ge=1)  # all clients together
    max_sessions_per_owner: int = Field(16, ge=1)  # per client connection
    session_idle_ttl_s: float = Field(300.0, gt=0)  # wall-clock idle time before a session is dropped

    @property
    def smoothing_alpha(self) -> float:
        return 2.0 / (self.smoothing_window + 1)
