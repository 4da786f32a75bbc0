"""The fatigue model backend: the seed's BaseModelBackend around FatigueAnalyzer."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from shared_protocol import BadRequestError, BaseModelBackend

from .analyzer import FatigueAnalyzer
from .engine import LandmarkEngine
from .request import FatigueRequest, parse_request
from .settings import FatigueSettings

logger = logging.getLogger(__name__)


def mediapipe_engine_factory(settings: FatigueSettings) -> LandmarkEngine:
    from .mediapipe_engine import MediaPipeFaceMeshEngine

    return MediaPipeFaceMeshEngine(
        max_faces=settings.max_faces,
        min_detection_confidence=settings.min_detection_confidence,
        detection_model=settings.face_detection_model,
    )


def engine_from_settings(settings: FatigueSettings) -> LandmarkEngine:
    if settings.engine == "torch":
        from .torch_engine.factory import torch_engine_factory

        return torch_engine_factory(settings)
    return mediapipe_engine_factory(settings)


class FatigueBackend(BaseModelBackend):
    model_name = "fatigue-face-mesh"
    model_version = "1.0.0"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        settings: FatigueSettings,
        engine_factory: Callable[[FatigueSettings], LandmarkEngine] = engine_from_settings,
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
        self.device = str(getattr(engine, "device", "cpu"))
        logger.info("landmark engine %s ready", engine.name)

    # ---- hot reload of the converted weight directory (torch engine) -----------------------------

    def model_source(self) -> str | None:
        return self.settings.torch_weights_dir if self.settings.engine == "torch" else None

    def load_model(self, source: str) -> LandmarkEngine:
        if self.settings.engine != "torch":
            raise RuntimeError("only the torch engine reloads its weights (engine is mediapipe)")
        # The engine runs its models once on a blank frame when built: the warm-up.
        return self._engine_factory(self.settings.model_copy(update={"torch_weights_dir": source}))

    def swap_model(self, loaded: LandmarkEngine) -> None:
        old, self.analyzer.engine = self.analyzer.engine, loaded  # sessions stay with the analyzer
        self.device = str(getattr(loaded, "device", "cpu"))
        old.close()

    def process_inference(self, data: dict[str, Any]) -> dict[str, Any]:
        request = parse_request(data, self.settings)
        return self.analyzer.analyze(request)

    def process_batch(self, batch: list[dict[str, Any]]) -> list[dict[str, Any] | Exception]:
        """One engine call for every frame of the batch (one forward pass per model with the torch
        engine); sessions then see the frames in arrival order. A bad request fails alone."""
        results: list[dict[str, Any] | Exception | None] = [None] * len(batch)
        parsed: list[tuple[int, FatigueRequest]] = []
        for i, data in enumerate(batch):
            try:
                parsed.append((i, parse_request(data, self.settings)))
            except BadRequestError as exc:
                results[i] = exc
        with_frames = [(i, request) for i, request in parsed if request.frame is not None]
        detected = self.analyzer.engine.detect([request.frame for _, request in with_frames]) if with_frames else []
        faces_of = {i: faces for (i, _), faces in zip(with_frames, detected, strict=True)}
        for i, request in parsed:
            try:
                results[i] = self.analyzer.analyze(request, faces=faces_of.get(i))
            except Exception as exc:  # one request's failure is its own
                results[i] = exc
        return results

    def model_info(self) -> dict[str, Any]:
        info = super().model_info()
        if self.analyzer is not None:
            with self.analyzer.sessions.lock:
                info["sessions"] = len(self.analyzer.sessions)
            engine = self.analyzer.engine
            if getattr(engine, "landmark_runtime", None):  # torch engine: compiled or TorchScript, and why
                info["landmark_runtime"] = engine.landmark_runtime
                if engine.compiled_unavailable:
                    info["landmark_compiled_unavailable"] = engine.compiled_unavailable
        return info

    def cleanup(self) -> None:
        if self.analyzer is not None:
            self.analyzer.engine.close()
