"""The fatigue model backend: the seed's BaseModelBackend around FatigueAnalyzer."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from shared_protocol import BaseModelBackend

from .analyzer import FatigueAnalyzer
from .engine import LandmarkEngine
from .request import parse_request
from .settings import FatigueSettings

logger = logging.getLogger(__name__)


def mediapipe_engine_factory(settings: FatigueSettings) -> LandmarkEngine:
    from .mediapipe_engine import MediaPipeFaceMeshEngine

    return MediaPipeFaceMeshEngine(
        max_faces=settings.max_faces,
        min_detection_confidence=settings.min_detection_confidence,
        detection_model=settings.face_detection_model,
    )


class FatigueBackend(BaseModelBackend):
    model_name = "fatigue-face-mesh"
    model_version = "1.0.0"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        settings: FatigueSettings,
        engine_factory: Callable[[FatigueSettings], LandmarkEngine] = mediapipe_engine_factory,
        **kwargs: Any,
    ):
        super().__init__(host, port, **kwargs)
        self.settings = settings
        self._engine_factory = engine_factory
        self.analyzer: FatigueAnalyzer | None = None

    def initialize_model(self) -> None:
        engine = self._engine_factory(self.settings)
        self.model_name = f"fatigue-{engine.name}"
        self.analyzer = FatigueAnalyzer(engine, self.settings)
        logger.info("landmark engine %s ready", engine.name)

    def process_inference(self, data: dict[str, Any]) -> dict[str, Any]:
        request = parse_request(data, self.settings)
        return self.analyzer.analyze(request)

    def model_info(self) -> dict[str, Any]:
        info = super().model_info()
        if self.analyzer is not None:
            with self.analyzer.sessions.lock:
                info["sessions"] = len(self.analyzer.sessions)
        return info

    def cleanup(self) -> None:
        if self.analyzer is not None:
            self.analyzer.engine.close()
