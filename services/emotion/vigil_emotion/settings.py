"""Service settings: model location, input limits, face detection and smoothing.

Every field can be overridden from the environment as `VIGIL_EMOTION_<FIELD NAME IN UPPER CASE>`,
e.g. `VIGIL_EMOTION_MODEL_DIR=/models/my-vit-fer`. (The main backend reads `VIGIL_EMOTION_HOST/
PORT/...` in *its* container to find this service; none of those names is a field here.)
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

ENV_PREFIX = "VIGIL_EMOTION_"
DEFAULT_MODEL_DIR = "/models/mini_xception"  # where the image's builder stage puts the converted model


class EmotionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # ---- model -------------------------------------------------------------------------------
    # A local directory written by `save_pretrained`: config.json (with id2label), weights and
    # preprocessor_config.json. Any AutoModelForImageClassification checkpoint works.
    model_dir: str = DEFAULT_MODEL_DIR
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")  # auto = cuda:0 when available
    torch_threads: int = Field(0, ge=0)  # intra-op threads; 0 keeps torch's default

    # ---- input limits ------------------------------------------------------------------------
    max_image_bytes: int = Field(8 * 1024 * 1024, gt=0)  # decoded JPEG/PNG bytes
    max_image_side: int = Field(4096, gt=0)  # pixels; larger frames are refused, not resized
    # (session_id, timestamp and reset_session follow the one rule of shared_protocol.fields.)

    # ---- face detection (OpenCV Haar; defaults are the `fer` package's) ----------------------
    max_faces: int = Field(5, ge=1)  # faces classified per frame, largest first
    min_face_size: int = Field(50, ge=8)  # pixels
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

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> EmotionSettings:
        """Defaults, then `VIGIL_EMOTION_<FIELD>` variables, then explicit keyword overrides."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name in cls.model_fields:
            value = environ.get(ENV_PREFIX + name.upper())
            if value is not None:
                values[name] = value
        # compose.gpu.yaml sets the stack-wide VIGIL_DEVICE; VIGIL_EMOTION_DEVICE wins over it.
        if "device" not in values and environ.get("VIGIL_DEVICE"):
            values["device"] = environ["VIGIL_DEVICE"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(values, strict=False)
        except ValidationError as exc:
            raise ValueError(f"bad {ENV_PREFIX}* setting: {exc}") from exc
